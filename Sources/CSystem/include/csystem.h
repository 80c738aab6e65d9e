#ifndef CSYSTEM_H
#define CSYSTEM_H

/// Reserves the bytes [offset, offset + length) of the open file `fd` on its file system (Linux fallocate, mode 0:
/// blocks allocated, the size extended), retrying on EINTR. Returns 0, or the errno: ENOSPC or EDQUOT when there is no
/// room, EOPNOTSUPP where the file system cannot reserve (unlike posix_fallocate, which then writes every block).
int cs_reserve(int fd, long long offset, long long length);

#endif
