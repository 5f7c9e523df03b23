#ifndef MTLSD_VERSION_H
#define MTLSD_VERSION_H

#define MTLSD_VERSION	"0.2.0"

#endif
