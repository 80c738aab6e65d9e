#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#ifndef _FILE_OFFSET_BITS
#define _FILE_OFFSET_BITS 64
#endif
#include "csystem.h"
#include <errno.h>
#include <fcntl.h>

int cs_reserve(int fd, long long offset, long long length) {
#ifdef __linux__
    int r;
    do { r = fallocate(fd, 0, (off_t)offset, (off_t)length); } while (r != 0 && errno == EINTR);
    return r == 0 ? 0 : errno;
#else
    (void)fd; (void)offset; (void)length;
    return EOPNOTSUPP;
#endif
}
