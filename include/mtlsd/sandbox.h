/*
 * Least privilege: the privilege drop, the seccomp filter and the
 * read-back that proves both.  Called in this order, after the listeners
 * are bound and every key is loaded, before any worker thread exists (so
 * that every thread inherits the result):
 *
 *	sandbox_prepare()	names to ids, RLIMIT_NOFILE (still root)
 *	sandbox_enter()		groups, gid, uid, capabilities, no_new_privs,
 *				not dumpable, no core, seccomp
 *	sandbox_check()		/proc/self/task/N/status says it is so
 */
#ifndef MTLSD_SANDBOX_H
#define MTLSD_SANDBOX_H

#include <sys/types.h>

#include <stddef.h>
#include <stdint.h>

#include "mtlsd/conf.h"

/* One thread's state as /proc shows it. */
struct sandbox_state {
	uid_t		 ss_uid[4];	/* real, effective, saved, fs */
	gid_t		 ss_gid[4];
	uint64_t	 ss_capeff;
	uint64_t	 ss_capprm;
	uint64_t	 ss_capinh;
	uint64_t	 ss_capbnd;
	uint64_t	 ss_capamb;
	int		 ss_nonewprivs;
	int		 ss_seccomp;
	size_t		 ss_groups;	/* supplementary groups */
};

struct sandbox {
	uid_t		 sb_uid;
	gid_t		 sb_gid;
	int		 sb_switch;	/* started as root: switch user */
	int		 sb_setpcap;	/* could empty the bounding set */
	int		 sb_seccomp;
	int		 sb_seccomp_before;	/* a filter from outside */
	struct sandbox_state sb_state;	/* as read back at the check */
};

/* Resolves user and group, raises RLIMIT_NOFILE; -1 with err set. */
int	 sandbox_prepare(const struct conf *conf, struct sandbox *sb,
	    char *err, size_t errlen);

/* Drops everything; -1 with err naming the step that failed. */
int	 sandbox_enter(struct sandbox *sb, char *err, size_t errlen);

/*
 * Reads back every thread's state and compares it with what the contract
 * demands; -1 with err naming the first failed check.
 */
int	 sandbox_check(struct sandbox *sb, char *err, size_t errlen);

/* Parses one /proc/PID/status text; for sandbox_check and the tests. */
int	 sandbox_parse_status(const char *text, struct sandbox_state *st);

/* "uid=65534 gid=65534 CapEff=0 ... Seccomp=2" */
void	 sandbox_state_str(const struct sandbox_state *st, char *buf,
	    size_t len);

/* The system call names the filter allows, NULL-terminated. */
extern const char *const sandbox_syscalls[];

#endif
