#define _GNU_SOURCE
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
