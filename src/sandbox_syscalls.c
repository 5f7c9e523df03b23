/*
 * The one list of system calls mtlsd may make once it serves.  The
 * seccomp filter (sandbox.c) is built from it, and so is Docker's
 * profile (docker/seccomp.json, `make seccomp-profile`).
 *
 * Calls that need argument checks (socket, clone, ...) are listed here
 * too; sandbox.c narrows them.  When mtlsd dies of SIGSYS, run it with
 * `sandbox = { seccomp = false; };` under strace -f to find the call
 * missing here, or set MTLSD_SECCOMP=log to have the kernel log it.
 */
#include <stddef.h>

#include "mtlsd/sandbox.h"

const char *const sandbox_syscalls[] = {
	/* the event loop and its wake-ups */
	"epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait",
	"eventfd2", "pipe2", "poll", "ppoll",
	/* sockets: accept, connect to targets, resolver (UDP) */
	"accept4", "socket", "connect", "shutdown", "getsockopt",
	"setsockopt", "getsockname", "getpeername", "bind",
	"recvfrom", "recvmsg", "recvmmsg", "sendto", "sendmsg", "sendmmsg",
	/* reading and writing descriptors; logs go to stderr */
	"read", "readv", "write", "writev", "close", "fcntl", "ioctl",
	"lseek", "dup", "dup3",
	/* reload and the read-back read files, never write them */
	"openat", "newfstatat", "fstat", "statx", "getdents64", "readlink",
	"readlinkat", "faccessat", "faccessat2",
	/* memory */
	"brk", "mmap", "munmap", "mremap", "mprotect", "madvise",
	/* threads, time, randomness */
	"clone", "clone3", "futex", "set_robust_list", "rseq",
	"sched_yield", "sched_getaffinity", "getrandom",
	"clock_gettime", "clock_getres", "gettimeofday", "nanosleep",
	"clock_nanosleep",
	/* signals and the way out */
	"rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack",
	"tgkill", "getpid", "gettid", "exit", "exit_group",
	/* libc asks who it is */
	"getuid", "geteuid", "getgid", "getegid", "uname",
	NULL
};
