/*
 * The admin endpoint on loopback: /healthz, /status, /metrics; and the
 * client behind `mtlsd --health`.
 */
#ifndef MTLSD_ADMIN_H
#define MTLSD_ADMIN_H

#include "mtlsd/conf.h"

struct proxy;
struct admin;

/* Binds the endpoint on the main thread's loop; NULL on failure. */
struct admin	*admin_new(struct proxy *p);
void		 admin_free(struct admin *a);

/* GET /healthz of the running instance: 0 healthy, 1 not. */
int		 admin_health(const struct conf *conf);

#endif
