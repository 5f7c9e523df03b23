/*
 * An mTLS 1.3 client that asks for KeyUpdates while the server's writes
 * to it are stuck: it connects with a small receive window, lets the
 * server's data pile up unread, then, round after round, reads a little
 * (the server's next write completes part of what waited and stops
 * again) and sends KeyUpdate(requested) with four bytes.  Then it reads
 * everything to the end.
 *
 *	keyupdate_client PORT CERTDIR [ROUNDS]
 *
 * Prints "bytes=N sha256=HEX" and exits 0 when the server ended the
 * stream with close_notify; 1 on any TLS or socket failure (a socket
 * quiet for 15 seconds is one), 2 on usage.
 *
 *	keyupdate_client PORT CERTDIR flood MAX
 *
 * The abuse: never reads, and sends up to MAX times KeyUpdate(requested)
 * plus one byte (the byte keeps OpenSSL from refusing a run of key
 * updates), each making the server queue an answer.  Prints "blocked=K"
 * when a write has waited a second (the server stopped reading us) or
 * "sent=MAX", and exits 0; 1 when the connection fails.
 *
 * A test tool: plain blocking code, every wait bounded.
 */
#include <sys/socket.h>
#include <sys/types.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <sys/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>


static int
fail(const char *what)
{
	fprintf(stderr, "keyupdate_client: %s\n", what);
	ERR_print_errors_fp(stderr);
	return 1;
}

int
main(int argc, char **argv)
{
	struct sockaddr_in	 sin;
	struct timeval		 tv = { 15, 0 };
	SSL_CTX			*ctx;
	SSL			*ssl;
	EVP_MD_CTX		*md;
	unsigned char		 buf[16384], dig[EVP_MAX_MD_SIZE];
	char			 path[512];
	unsigned int		 dlen, i;
	unsigned long long	 total = 0;
	int			 fd, r, rcv = 4096, sndbuf = 16384, rounds, k;
	int			 flood;

	if (argc < 3)
		return 2;
	flood = argc > 4 && strcmp(argv[3], "flood") == 0;
	rounds = argc > 3 ? atoi(argv[flood ? 4 : 3]) : 20;
	if (flood)
		tv.tv_sec = 1;
	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL)
		return fail("SSL_CTX_new");
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	snprintf(path, sizeof(path), "%s/client.crt", argv[2]);
	if (SSL_CTX_use_certificate_chain_file(ctx, path) != 1)
		return fail("client.crt");
	snprintf(path, sizeof(path), "%s/client.key", argv[2]);
	if (SSL_CTX_use_PrivateKey_file(ctx, path, SSL_FILETYPE_PEM) != 1)
		return fail("client.key");

	if ((fd = socket(AF_INET, SOCK_STREAM, 0)) == -1)
		return fail("socket");
	/* Before connect, so that the window the server sees is small. */
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
	if (flood)	/* a server that stops reading shows at once */
		(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf,
		    sizeof(sndbuf));
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((unsigned short)atoi(argv[1]));
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1)
		return fail("connect");
	if ((ssl = SSL_new(ctx)) == NULL || SSL_set_fd(ssl, fd) != 1)
		return fail("SSL_new");
	if (SSL_connect(ssl) != 1)
		return fail("handshake");

	if (flood) {
		for (k = 0; k < rounds; k++) {
			if (SSL_key_update(ssl, SSL_KEY_UPDATE_REQUESTED) != 1)
				return fail("SSL_key_update");
			if ((r = SSL_write(ssl, "x", 1)) == 1)
				continue;
			if (SSL_get_error(ssl, r) == SSL_ERROR_WANT_WRITE) {
				printf("blocked=%d\n", k);	/* SO_SNDTIMEO */
				return 0;
			}
			return fail("write in the flood");
		}
		printf("sent=%d\n", k);
		return 0;
	}
	if ((md = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
		return fail("sha256");
	/* The server's writes to us fill the window and stop. */
	usleep(200 * 1000);
	for (k = 0; k < rounds; k++) {
		if ((r = SSL_read(ssl, buf, 6000)) <= 0)
			return fail("read between key updates");
		total += (unsigned long long)r;
		EVP_DigestUpdate(md, buf, (size_t)r);
		usleep(20 * 1000);
		if (SSL_key_update(ssl, SSL_KEY_UPDATE_REQUESTED) != 1)
			return fail("SSL_key_update");
		if (SSL_write(ssl, "ping", 4) != 4)
			return fail("write after KeyUpdate");
	}
	for (;;) {
		r = SSL_read(ssl, buf, sizeof(buf));
		if (r > 0) {
			total += (unsigned long long)r;
			EVP_DigestUpdate(md, buf, (size_t)r);
			continue;
		}
		if (SSL_get_error(ssl, r) == SSL_ERROR_ZERO_RETURN)
			break;		/* the server's close_notify */
		return fail("read");
	}
	EVP_DigestFinal_ex(md, dig, &dlen);
	printf("bytes=%llu sha256=", total);
	for (i = 0; i < dlen; i++)
		printf("%02x", dig[i]);
	printf("\n");
	(void)SSL_shutdown(ssl);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	EVP_MD_CTX_free(md);
	close(fd);
	return 0;
}
