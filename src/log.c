/*
 * Logging: text or JSON lines on stderr, one write(2) each.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>

#include "mtlsd/log.h"

#define LOG_LINE_MAX		4096
#define LOG_VALUE_MAX		512	/* bytes of one value in a line */
#define LOG_RESERVE		16	/* kept free for a line's closing */
#define REJECT_BURST		20	/* lines at once */
#define REJECT_PER_SEC		10	/* lines a second after that */

static enum log_level	 log_level = LOG_LEVEL_INFO;
static enum log_format	 log_format = LOG_FORMAT_TEXT;

static pthread_mutex_t	 reject_mtx = PTHREAD_MUTEX_INITIALIZER;
static double		 reject_tokens = REJECT_BURST;
static struct timespec	 reject_last;
static unsigned long	 reject_suppressed;

static const char *const level_names[] = { "error", "warn", "info", "debug" };

static void	log_emit(enum log_level, const char *, const char *);
static void	vlog(enum log_level, int, const char *, va_list)
		    LOG_PRINTF(3, 0);
static size_t	put_json(char *, size_t, size_t, const char *, size_t);
static size_t	put_text(char *, size_t, size_t, const char *);
static size_t	put_raw(char *, size_t, size_t, const char *);
static size_t	put_stamp(char *, size_t, size_t, enum log_level);

void
log_init(enum log_level level, enum log_format format)
{
	log_level = level;
	log_format = format;
}

int
log_enabled(enum log_level level)
{
	return level <= log_level;
}

/* Appends s to buf at off; never overflows, always NUL-terminates. */
static size_t
put_raw(char *buf, size_t len, size_t off, const char *s)
{
	size_t	n;

	if (off >= len - 1)
		return off;
	n = strlen(s);
	if (n > len - 1 - off)
		n = len - 1 - off;
	memcpy(buf + off, s, n);
	off += n;
	buf[off] = '\0';
	return off;
}

/*
 * A JSON string body: quotes, backslash and control bytes escaped.  At
 * most LOG_VALUE_MAX bytes of s, and never past len - LOG_RESERVE, so
 * that whatever follows (closing quote and brace) still fits; a cut
 * value ends in "..." on a UTF-8 character boundary.
 */
static size_t
put_json(char *buf, size_t len, size_t off, const char *s, size_t max)
{
	char		 esc[8];
	unsigned char	 c;
	size_t		 start = off, limit = len - LOG_RESERVE, n = 0;

	if (off >= limit)
		return off;
	for (; *s != '\0'; s++, n++) {
		if (off + 6 >= limit || n >= max) {
			while (off > start &&
			    ((unsigned char)buf[off - 1] & 0xc0) == 0x80)
				off--;
			if (off > start && ((unsigned char)buf[off - 1] & 0x80))
				off--;
			if (off + 3 < len - 1) {
				memcpy(buf + off, "...", 3);
				off += 3;
			}
			break;
		}
		c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			buf[off++] = '\\';
			buf[off++] = (char)c;
		} else if (c < 0x20 || c == 0x7f) {
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			memcpy(buf + off, esc, 6);
			off += 6;
		} else
			buf[off++] = (char)c;
	}
	buf[off] = '\0';
	return off;
}

/* A text value: bare when it is one safe word, else quoted like JSON. */
static size_t
put_text(char *buf, size_t len, size_t off, const char *s)
{
	const char	*p;

	if (*s != '\0' && strlen(s) <= LOG_VALUE_MAX &&
	    strpbrk(s, " \"\\=") == NULL) {
		for (p = s; *p != '\0'; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				break;
		if (*p == '\0')
			return put_raw(buf, len, off, s);
	}
	off = put_raw(buf, len, off, "\"");
	off = put_json(buf, len, off, s, LOG_VALUE_MAX);
	return put_raw(buf, len, off, "\"");
}

static size_t
put_stamp(char *buf, size_t len, size_t off, enum log_level level)
{
	struct timespec	 ts;
	struct tm	 tm;
	char		 stamp[64];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	snprintf(stamp, sizeof(stamp), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	    tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
	if (log_format == LOG_FORMAT_JSON) {
		off = put_raw(buf, len, off, "{\"ts\":\"");
		off = put_raw(buf, len, off, stamp);
		off = put_raw(buf, len, off, "\",\"level\":\"");
		off = put_raw(buf, len, off, level_names[level]);
		return put_raw(buf, len, off, "\"");
	}
	off = put_raw(buf, len, off, stamp);
	off = put_raw(buf, len, off, " ");
	return put_raw(buf, len, off, level_names[level]);
}

static void
log_write(char *buf, size_t off, size_t len)
{
	ssize_t	n;

	if (off > len - 2)
		off = len - 2;
	buf[off++] = '\n';
	while (off > 0) {
		n = write(STDERR_FILENO, buf, off);
		if (n == -1 && errno == EINTR)
			continue;
		break;	/* a lost log line must not stop the proxy */
	}
}

static void
log_emit(enum log_level level, const char *msg, const char *event)
{
	char	buf[LOG_LINE_MAX];
	size_t	off;

	off = put_stamp(buf, sizeof(buf), 0, level);
	if (log_format == LOG_FORMAT_JSON) {
		if (event != NULL) {
			off = put_raw(buf, sizeof(buf), off, ",\"event\":\"");
			off = put_json(buf, sizeof(buf), off, event,
			    LOG_VALUE_MAX);
			off = put_raw(buf, sizeof(buf), off, "\"");
		}
		off = put_raw(buf, sizeof(buf), off, ",\"msg\":\"");
		off = put_json(buf, sizeof(buf), off, msg, sizeof(buf));
		off = put_raw(buf, sizeof(buf), off, "\"}");
	} else {
		off = put_raw(buf, sizeof(buf), off, " ");
		off = put_raw(buf, sizeof(buf), off, msg);
	}
	log_write(buf, off, sizeof(buf));
}

static void
vlog(enum log_level level, int errnum, const char *fmt, va_list ap)
{
	char	msg[LOG_LINE_MAX / 2];
	size_t	n;
	int	saved = errno;

	if (!log_enabled(level)) {
		errno = saved;
		return;
	}
	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (errnum != 0) {
		n = strlen(msg);
		snprintf(msg + n, sizeof(msg) - n, ": %s", strerror(errnum));
	}
	log_emit(level, msg, NULL);
	errno = saved;
}

void
log_warn(const char *fmt, ...)
{
	va_list	ap;
	int	e = errno;

	va_start(ap, fmt);
	vlog(LOG_LEVEL_WARN, e, fmt, ap);
	va_end(ap);
}

void
log_warnx(const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	vlog(LOG_LEVEL_WARN, 0, fmt, ap);
	va_end(ap);
}

void
log_errorx(const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	vlog(LOG_LEVEL_ERROR, 0, fmt, ap);
	va_end(ap);
}

void
log_info(const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	vlog(LOG_LEVEL_INFO, 0, fmt, ap);
	va_end(ap);
}

void
log_debug(const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	vlog(LOG_LEVEL_DEBUG, 0, fmt, ap);
	va_end(ap);
}

void
fatal(const char *fmt, ...)
{
	va_list	ap;
	int	e = errno;

	va_start(ap, fmt);
	vlog(LOG_LEVEL_ERROR, e, fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	vlog(LOG_LEVEL_ERROR, 0, fmt, ap);
	va_end(ap);
	exit(1);
}

void
log_fields(enum log_level level, const char *event,
    const struct log_field *fields, size_t nfields)
{
	char	buf[LOG_LINE_MAX];
	size_t	off, i;
	int	saved = errno;

	if (!log_enabled(level))
		return;
	off = put_stamp(buf, sizeof(buf), 0, level);
	if (log_format == LOG_FORMAT_JSON) {
		off = put_raw(buf, sizeof(buf), off, ",\"event\":\"");
		off = put_json(buf, sizeof(buf), off, event,
		    LOG_VALUE_MAX);
		off = put_raw(buf, sizeof(buf), off, "\"");
		for (i = 0; i < nfields; i++) {
			/* No room for one more whole field: leave it out. */
			if (off + strlen(fields[i].lf_key) + 32 >=
			    sizeof(buf) - LOG_RESERVE)
				break;
			off = put_raw(buf, sizeof(buf), off, ",\"");
			off = put_json(buf, sizeof(buf), off,
			    fields[i].lf_key, LOG_VALUE_MAX);
			off = put_raw(buf, sizeof(buf), off, "\":");
			if (fields[i].lf_number)
				off = put_raw(buf, sizeof(buf), off,
				    fields[i].lf_value);
			else {
				off = put_raw(buf, sizeof(buf), off, "\"");
				off = put_json(buf, sizeof(buf), off,
				    fields[i].lf_value, LOG_VALUE_MAX);
				off = put_raw(buf, sizeof(buf), off, "\"");
			}
		}
		off = put_raw(buf, sizeof(buf), off, "}");
	} else {
		off = put_raw(buf, sizeof(buf), off, " ");
		off = put_raw(buf, sizeof(buf), off, event);
		for (i = 0; i < nfields; i++) {
			if (off + strlen(fields[i].lf_key) + 32 >=
			    sizeof(buf) - LOG_RESERVE)
				break;
			off = put_raw(buf, sizeof(buf), off, " ");
			off = put_raw(buf, sizeof(buf), off, fields[i].lf_key);
			off = put_raw(buf, sizeof(buf), off, "=");
			off = put_text(buf, sizeof(buf), off,
			    fields[i].lf_value);
		}
	}
	log_write(buf, off, sizeof(buf));
	errno = saved;
}

int
log_reject_allowed(void)
{
	struct timespec	 now;
	unsigned long	 held;
	double		 dt;
	int		 ok;

	clock_gettime(CLOCK_MONOTONIC, &now);
	pthread_mutex_lock(&reject_mtx);
	dt = (double)(now.tv_sec - reject_last.tv_sec) +
	    (double)(now.tv_nsec - reject_last.tv_nsec) / 1e9;
	reject_last = now;
	reject_tokens += dt * REJECT_PER_SEC;
	if (reject_tokens > REJECT_BURST)
		reject_tokens = REJECT_BURST;
	held = 0;
	if (reject_tokens >= 1.0) {
		reject_tokens -= 1.0;
		held = reject_suppressed;
		reject_suppressed = 0;
		ok = 1;
	} else {
		reject_suppressed++;
		ok = 0;
	}
	pthread_mutex_unlock(&reject_mtx);
	if (held > 0)
		log_warnx("%lu rejection log lines suppressed (rate limit)",
		    held);
	return ok;
}

const char *
log_tls_errors(char *buf, size_t len)
{
	unsigned long	 e;
	size_t		 off = 0;
	const char	*r;
	char		 tmp[256];

	buf[0] = '\0';
	while ((e = ERR_get_error()) != 0) {
		if ((r = ERR_reason_error_string(e)) == NULL) {
			ERR_error_string_n(e, tmp, sizeof(tmp));
			r = tmp;
		}
		if (off > 0)
			off = put_raw(buf, len, off, "; ");
		off = put_raw(buf, len, off, r);
	}
	return buf;
}
