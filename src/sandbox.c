/*
 * Least privilege, proven: the drop, the seccomp filter, the read-back.
 *
 * Capabilities are cleared with the raw capset(2) and prctl(2) calls
 * rather than libcap: five calls do not justify a library, and the
 * read-back from /proc is the real proof either way.  The filter uses
 * libseccomp, which knows every architecture's numbers and argument
 * layout better than hand-written BPF would.
 */
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <linux/capability.h>
#include <sched.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <seccomp.h>

#include "mtlsd/conf.h"
#include "mtlsd/log.h"
#include "mtlsd/sandbox.h"

#define NOBODY_ID	65534
#define FD_SLACK	256	/* listeners, logs, resolver, reload */

static int	sandbox_id(const char *, int, unsigned long *, char *, size_t);
static int	sandbox_caps_clear(int, int, char *, size_t);
static int	sandbox_seccomp(char *, size_t);
static int	sandbox_read_status(const char *, struct sandbox_state *);
static int	sandbox_judge(const struct sandbox *,
		    const struct sandbox_state *, char *, size_t);

#ifdef MTLSD_TEST
/*
 * Test builds only: MTLSD_TEST_SKIP names one step to leave out, so the
 * tests can prove that the read-back refuses to serve without it.
 */
static int
skip(const char *step)
{
	const char	*s = getenv("MTLSD_TEST_SKIP");

	return s != NULL && strcmp(s, step) == 0;
}
#else
#define skip(step)	0
#endif

/* A user or group name, or a number. */
static int
sandbox_id(const char *name, int group, unsigned long *id, char *err,
    size_t errlen)
{
	struct passwd	*pw;
	struct group	*gr;
	char		*end;
	unsigned long	 v;

	errno = 0;
	v = strtoul(name, &end, 10);
	if (*name != '\0' && *end == '\0' && errno == 0 && v < UINT_MAX) {
		*id = v;
		return 0;
	}
	if (group) {
		if ((gr = getgrnam(name)) != NULL) {
			*id = gr->gr_gid;
			return 0;
		}
	} else if ((pw = getpwnam(name)) != NULL) {
		*id = pw->pw_uid;
		return 0;
	}
	snprintf(err, errlen, "no such %s \"%s\"", group ? "group" : "user",
	    name);
	return -1;
}

int
sandbox_prepare(const struct conf *conf, struct sandbox *sb, char *err,
    size_t errlen)
{
	struct passwd	*pw;
	struct rlimit	 rl;
	unsigned long	 id;
	rlim_t		 need;

	memset(sb, 0, sizeof(*sb));
	sb->sb_seccomp = conf->c_seccomp;
	/*
	 * Docker, Kubernetes and systemd may have installed a filter of
	 * their own: with ours off, that is the state to expect.
	 */
	if (sandbox_read_status("/proc/self/status", &sb->sb_state) == 0 &&
	    sb->sb_state.ss_seccomp > 0)
		sb->sb_seccomp_before = sb->sb_state.ss_seccomp;
	sb->sb_switch = geteuid() == 0;
	sb->sb_setpcap = prctl(PR_CAPBSET_READ, CAP_SETPCAP) == 1 &&
	    sb->sb_switch;
	sb->sb_uid = NOBODY_ID;
	sb->sb_gid = NOBODY_ID;
	if (conf->c_user != NULL) {
		if (sandbox_id(conf->c_user, 0, &id, err, errlen) == -1)
			return -1;
		sb->sb_uid = (uid_t)id;
		/* A named user brings its primary group by default. */
		if (conf->c_group == NULL &&
		    (pw = getpwuid(sb->sb_uid)) != NULL)
			sb->sb_gid = pw->pw_gid;
	}
	if (conf->c_group != NULL) {
		if (sandbox_id(conf->c_group, 1, &id, err, errlen) == -1)
			return -1;
		sb->sb_gid = (gid_t)id;
	}
	if (sb->sb_switch && (sb->sb_uid == 0 || sb->sb_gid == 0)) {
		snprintf(err, errlen, "user and group must not be root (0)");
		return -1;
	}

	/* Two descriptors a connection, and some to spare. */
	need = (rlim_t)conf->c_limits.l_max_connections * 2 + FD_SLACK;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < need) {
		if (rl.rlim_max < need && sb->sb_switch)
			rl.rlim_max = need;	/* root may raise it */
		rl.rlim_cur = rl.rlim_max < need ? rl.rlim_max : need;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
			getrlimit(RLIMIT_NOFILE, &rl);
		if (rl.rlim_cur < need)
			log_warnx("RLIMIT_NOFILE is %llu: max_connections %u "
			    "needs %llu; connections beyond the limit will be "
			    "refused", (unsigned long long)rl.rlim_cur,
			    conf->c_limits.l_max_connections,
			    (unsigned long long)need);
	}
	return 0;
}

/*
 * Empties the ambient set, the bounding set (when asked: it needs
 * CAP_SETPCAP) and, when asked, the thread's own sets.
 */
static int
sandbox_caps_clear(int bounding, int own, char *err, size_t errlen)
{
	struct __user_cap_header_struct	 hdr;
	struct __user_cap_data_struct	 data[2];
	int				 cap, last = CAP_LAST_CAP;
	FILE				*f;
	char				 num[32], *end;
	long				 v;

	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) == -1 &&
	    errno != EINVAL) {
		snprintf(err, errlen, "clear ambient capabilities: %s",
		    strerror(errno));
		return -1;
	}
	if (bounding && !skip("bounding")) {
		/* The kernel may know more capabilities than our headers. */
		if ((f = fopen("/proc/sys/kernel/cap_last_cap", "r")) != NULL) {
			if (fgets(num, sizeof(num), f) != NULL &&
			    (v = strtol(num, &end, 10)) >= 0 && v < 1024 &&
			    end != num)
				last = (int)v;
			fclose(f);
		}
		for (cap = 0; cap <= last; cap++)
			if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == -1 &&
			    errno != EINVAL) {
				snprintf(err, errlen, "drop capability %d from "
				    "the bounding set: %s", cap,
				    strerror(errno));
				return -1;
			}
	}
	if (!own || skip("caps"))
		return 0;
	memset(&hdr, 0, sizeof(hdr));
	memset(data, 0, sizeof(data));
	hdr.version = _LINUX_CAPABILITY_VERSION_3;
	if (syscall(SYS_capset, &hdr, data) == -1) {
		snprintf(err, errlen, "clear capabilities: %s",
		    strerror(errno));
		return -1;
	}
	return 0;
}

static int
sandbox_seccomp(char *err, size_t errlen)
{
	scmp_filter_ctx	 ctx;
	const char	*mode = getenv("MTLSD_SECCOMP");
	uint32_t	 deny = SCMP_ACT_KILL_PROCESS;
	size_t		 i;
	int		 nr, rc;

	if (mode != NULL && strcmp(mode, "log") == 0) {
		/* Debugging aid: log what would have been killed. */
		deny = SCMP_ACT_LOG;
		log_warnx("MTLSD_SECCOMP=log: the filter only logs "
		    "forbidden system calls (see the kernel log)");
	}
	if ((ctx = seccomp_init(deny)) == NULL) {
		snprintf(err, errlen, "seccomp_init failed");
		return -1;
	}
	for (i = 0; sandbox_syscalls[i] != NULL; i++) {
		nr = seccomp_syscall_resolve_name(sandbox_syscalls[i]);
		if (nr == __NR_SCMP_ERROR)
			continue;	/* not on this architecture */
		if (strcmp(sandbox_syscalls[i], "clone") == 0) {
			/* Threads only: never a new process. */
			rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 1,
			    SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD,
			    CLONE_THREAD));
		} else if (strcmp(sandbox_syscalls[i], "clone3") == 0) {
			/*
			 * clone3 keeps its flags in memory, out of the
			 * filter's sight: make libc fall back to clone.
			 */
			rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), nr,
			    0);
		} else if (strcmp(sandbox_syscalls[i], "ioctl") == 0) {
			/* evbuffer asks how much is readable; nothing else. */
			rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 1,
			    SCMP_A1(SCMP_CMP_EQ, FIONREAD));
		} else if (strcmp(sandbox_syscalls[i], "socket") == 0) {
			rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 1,
			    SCMP_A0(SCMP_CMP_EQ, AF_INET));
			if (rc == 0)
				rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr,
				    1, SCMP_A0(SCMP_CMP_EQ, AF_INET6));
			if (rc == 0)
				rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr,
				    1, SCMP_A0(SCMP_CMP_EQ, AF_UNIX));
		} else
			rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
		if (rc != 0) {
			snprintf(err, errlen, "seccomp rule for %s: %s",
			    sandbox_syscalls[i], strerror(-rc));
			seccomp_release(ctx);
			return -1;
		}
	}
	/*
	 * Every thread, should one exist already.  no_new_privs is ours
	 * to set (sandbox_enter), so that the read-back proves our call.
	 */
	if ((rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1)) != 0 ||
	    (rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0)) != 0 ||
	    (rc = seccomp_load(ctx)) != 0) {
		snprintf(err, errlen, "cannot load the seccomp filter: %s",
		    strerror(-rc));
		seccomp_release(ctx);
		return -1;
	}
	seccomp_release(ctx);
	return 0;
}

int
sandbox_enter(struct sandbox *sb, char *err, size_t errlen)
{
	struct rlimit	rl = { 0, 0 };

	if (setrlimit(RLIMIT_CORE, &rl) == -1) {
		snprintf(err, errlen, "RLIMIT_CORE: %s", strerror(errno));
		return -1;
	}
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == -1) {
		snprintf(err, errlen, "PR_SET_DUMPABLE: %s", strerror(errno));
		return -1;
	}
	if (sb->sb_switch) {
		/* The bounding set can only be emptied while root. */
		if (sandbox_caps_clear(sb->sb_setpcap, 0, err, errlen) == -1)
			return -1;
		if (setgroups(0, NULL) == -1) {
			snprintf(err, errlen, "setgroups: %s", strerror(errno));
			return -1;
		}
		if (setresgid(sb->sb_gid, sb->sb_gid, sb->sb_gid) == -1) {
			snprintf(err, errlen, "setresgid %u: %s",
			    (unsigned)sb->sb_gid, strerror(errno));
			return -1;
		}
		if (!skip("setuid") && setresuid(sb->sb_uid, sb->sb_uid,
		    sb->sb_uid) == -1) {
			snprintf(err, errlen, "setresuid %u: %s",
			    (unsigned)sb->sb_uid, strerror(errno));
			return -1;
		}
	}
	/* Whatever setresuid left, and file capabilities of a non-root. */
	if (sandbox_caps_clear(0, 1, err, errlen) == -1)
		return -1;
	if (!skip("nnp") && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1) {
		snprintf(err, errlen, "PR_SET_NO_NEW_PRIVS: %s",
		    strerror(errno));
		return -1;
	}
	if (sb->sb_seccomp && !skip("seccomp") &&
	    sandbox_seccomp(err, errlen) == -1)
		return -1;
	return 0;
}

static uint64_t
hex64(const char *s)
{
	return strtoull(s, NULL, 16);
}

/* Up to n decimal numbers separated by blanks; how many were read. */
static int
decimals(const char *s, unsigned long *v, int n)
{
	char	*end;
	int	 i;

	for (i = 0; i < n; i++) {
		while (*s == ' ' || *s == '\t')
			s++;
		if (*s < '0' || *s > '9')
			break;
		errno = 0;
		v[i] = strtoul(s, &end, 10);
		if (errno != 0)
			break;
		s = end;
	}
	return i;
}

/* A single decimal number, or -1 when there is none. */
static int
decimal(const char *s)
{
	unsigned long	v;

	if (decimals(s, &v, 1) != 1 || v > 1000)
		return -1;
	return (int)v;
}

int
sandbox_parse_status(const char *text, struct sandbox_state *st)
{
	const char	*line, *v;
	int		 seen = 0;
	unsigned long	 a[4];

	memset(st, 0, sizeof(*st));
	st->ss_seccomp = -1;
	st->ss_nonewprivs = -1;
	for (line = text; line != NULL && *line != '\0';
	    line = (v = strchr(line, '\n')) != NULL ? v + 1 : NULL) {
		if ((v = strchr(line, ':')) == NULL)
			continue;
		v++;
		while (*v == ' ' || *v == '\t')
			v++;
		if (strncmp(line, "Uid:", 4) == 0 && decimals(v, a, 4) == 4) {
			st->ss_uid[0] = (uid_t)a[0];
			st->ss_uid[1] = (uid_t)a[1];
			st->ss_uid[2] = (uid_t)a[2];
			st->ss_uid[3] = (uid_t)a[3];
			seen |= 1;
		} else if (strncmp(line, "Gid:", 4) == 0 &&
		    decimals(v, a, 4) == 4) {
			st->ss_gid[0] = (gid_t)a[0];
			st->ss_gid[1] = (gid_t)a[1];
			st->ss_gid[2] = (gid_t)a[2];
			st->ss_gid[3] = (gid_t)a[3];
			seen |= 2;
		} else if (strncmp(line, "Groups:", 7) == 0) {
			for (st->ss_groups = 0; *v != '\0' && *v != '\n';) {
				while (*v == ' ')
					v++;
				if (!isdigit((unsigned char)*v))
					break;
				st->ss_groups++;
				while (isdigit((unsigned char)*v))
					v++;
			}
		} else if (strncmp(line, "CapInh:", 7) == 0)
			st->ss_capinh = hex64(v);
		else if (strncmp(line, "CapPrm:", 7) == 0) {
			st->ss_capprm = hex64(v);
			seen |= 4;
		} else if (strncmp(line, "CapEff:", 7) == 0) {
			st->ss_capeff = hex64(v);
			seen |= 8;
		} else if (strncmp(line, "CapBnd:", 7) == 0)
			st->ss_capbnd = hex64(v);
		else if (strncmp(line, "CapAmb:", 7) == 0)
			st->ss_capamb = hex64(v);
		else if (strncmp(line, "NoNewPrivs:", 11) == 0) {
			st->ss_nonewprivs = decimal(v);
			seen |= 16;
		} else if (strncmp(line, "Seccomp:", 8) == 0) {
			st->ss_seccomp = decimal(v);
			seen |= 32;
		}
	}
	return seen == 63 ? 0 : -1;
}

static int
sandbox_read_status(const char *path, struct sandbox_state *st)
{
	char	buf[4096];
	ssize_t	n;
	size_t	off = 0;
	int	fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	while (off < sizeof(buf) - 1 &&
	    (n = read(fd, buf + off, sizeof(buf) - 1 - off)) > 0)
		off += (size_t)n;
	close(fd);
	buf[off] = '\0';
	return sandbox_parse_status(buf, st);
}

/* The contract's demands, one by one, naming the first one unmet. */
static int
sandbox_judge(const struct sandbox *sb, const struct sandbox_state *st,
    char *err, size_t errlen)
{
	int	i, want;

	for (i = 0; i < 4; i++) {
		if (st->ss_uid[i] == 0) {
			snprintf(err, errlen, "Uid is 0 (root)");
			return -1;
		}
		if (st->ss_gid[i] == 0) {
			snprintf(err, errlen, "Gid is 0 (root)");
			return -1;
		}
	}
	if (st->ss_capeff != 0 || st->ss_capprm != 0 || st->ss_capinh != 0 ||
	    st->ss_capamb != 0) {
		snprintf(err, errlen, "capabilities remain (CapEff=%llx "
		    "CapPrm=%llx CapInh=%llx CapAmb=%llx)",
		    (unsigned long long)st->ss_capeff,
		    (unsigned long long)st->ss_capprm,
		    (unsigned long long)st->ss_capinh,
		    (unsigned long long)st->ss_capamb);
		return -1;
	}
	if (sb->sb_setpcap && st->ss_capbnd != 0) {
		snprintf(err, errlen, "bounding set not empty (CapBnd=%llx)",
		    (unsigned long long)st->ss_capbnd);
		return -1;
	}
	if (st->ss_nonewprivs != 1) {
		snprintf(err, errlen, "NoNewPrivs is %d, not 1",
		    st->ss_nonewprivs);
		return -1;
	}
	want = sb->sb_seccomp ? 2 : sb->sb_seccomp_before;
	if (st->ss_seccomp != want) {
		snprintf(err, errlen, "Seccomp is %d, not %d", st->ss_seccomp,
		    want);
		return -1;
	}
	if (sb->sb_switch && st->ss_groups != 0) {
		snprintf(err, errlen, "supplementary groups remain");
		return -1;
	}
	return 0;
}

int
sandbox_check(struct sandbox *sb, char *err, size_t errlen)
{
	struct sandbox_state	 st;
	struct dirent		*de;
	DIR			*d;
	char			 path[300], why[256];
	int			 n = 0;

	if (sandbox_read_status("/proc/self/status", &sb->sb_state) == -1) {
		snprintf(err, errlen, "cannot read /proc/self/status");
		return -1;
	}
	if (sandbox_judge(sb, &sb->sb_state, err, errlen) == -1)
		return -1;
	if ((d = opendir("/proc/self/task")) == NULL) {
		snprintf(err, errlen, "cannot read /proc/self/task");
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/status",
		    de->d_name);
		if (sandbox_read_status(path, &st) == -1)
			continue;	/* the thread ended meanwhile */
		if (sandbox_judge(sb, &st, why, sizeof(why)) == -1) {
			snprintf(err, errlen, "thread %s: %s", de->d_name, why);
			closedir(d);
			return -1;
		}
		n++;
	}
	closedir(d);
	if (n == 0) {
		snprintf(err, errlen, "no thread could be read back");
		return -1;
	}
	return 0;
}

void
sandbox_state_str(const struct sandbox_state *st, char *buf, size_t len)
{
	snprintf(buf, len, "uid=%u gid=%u CapEff=%016llx CapPrm=%016llx "
	    "CapBnd=%016llx CapAmb=%016llx NoNewPrivs=%d Seccomp=%d",
	    (unsigned)st->ss_uid[1], (unsigned)st->ss_gid[1],
	    (unsigned long long)st->ss_capeff,
	    (unsigned long long)st->ss_capprm,
	    (unsigned long long)st->ss_capbnd,
	    (unsigned long long)st->ss_capamb, st->ss_nonewprivs,
	    st->ss_seccomp);
}
