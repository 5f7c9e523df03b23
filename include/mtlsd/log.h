/*
 * Logging to stderr, as text or one JSON object a line.  Safe to call
 * from every thread: each line goes out in one write(2).
 */
#ifndef MTLSD_LOG_H
#define MTLSD_LOG_H

#include <stddef.h>

#include "mtlsd/conf.h"

#define LOG_PRINTF(a, b)	__attribute__((format(printf, a, b)))

/* One field of a structured line; numbers are written unquoted in JSON. */
struct log_field {
	const char		*lf_key;
	const char		*lf_value;
	int			 lf_number;
};

void	 log_init(enum log_level level, enum log_format format);
int	 log_enabled(enum log_level level);

void	 log_warn(const char *fmt, ...) LOG_PRINTF(1, 2);	/* + strerror */
void	 log_warnx(const char *fmt, ...) LOG_PRINTF(1, 2);
void	 log_errorx(const char *fmt, ...) LOG_PRINTF(1, 2);
void	 log_info(const char *fmt, ...) LOG_PRINTF(1, 2);
void	 log_debug(const char *fmt, ...) LOG_PRINTF(1, 2);
void	 fatal(const char *fmt, ...) LOG_PRINTF(1, 2)
	    __attribute__((noreturn));
void	 fatalx(const char *fmt, ...) LOG_PRINTF(1, 2)
	    __attribute__((noreturn));

/* A structured line: "event k=v ..." or {"event":..., "k": v, ...}. */
void	 log_fields(enum log_level level, const char *event,
	    const struct log_field *fields, size_t nfields);

/*
 * Rejection lines are rate-limited so that a flood of bad peers cannot
 * flood the log: returns 1 when the caller may log one more line.  When
 * lines were held back, a summary line says how many first.
 */
int	 log_reject_allowed(void);

/*
 * Empties OpenSSL's error queue of this thread into buf as
 * "reason; reason" ("" when empty).  Returns buf.
 */
const char *log_tls_errors(char *buf, size_t len);

#endif
