#ifndef CSYSTEM_H
#define CSYSTEM_H

#include <stddef.h>

/// Reserves the bytes [offset, offset + length) of the open file `fd` on its file system (Linux fallocate, mode 0:
/// blocks allocated, the size extended), retrying on EINTR. Returns 0, or the errno: ENOSPC or EDQUOT when there is no
/// room, EOPNOTSUPP where the file system cannot reserve (unlike posix_fallocate, which then writes every block).
int cs_reserve(int fd, long long offset, long long length);

/// A fault (SIGBUS, BUS_ADRERR) in the mapped bytes [start, start + length) of the file `path` (it shrank under the
/// map: another program truncated or rewrote it in place; or its storage failed) ends the process with exit status 2
/// and a line naming the file and its sizes, after calling the abort hook (cs_set_fault_abort), instead of a crash;
/// any other SIGBUS goes to the handler that was there before. Returns the slot to pass to cs_unwatch_mapping when
/// the map goes, or -1 when every slot is taken or the path is longer than 4095 bytes (the map is then not watched).
int cs_watch_mapping(const void *start, size_t length, const char *path);
void cs_unwatch_mapping(int slot);
/// What that line starts with ("error: ", or under MPI "error (rank R of W): "): set once the process knows it.
void cs_set_fault_prefix(const char *prefix);
/// Called with 2 after that line (under MPI: MPI_Abort, so that every rank of the job ends), before _exit(2).
void cs_set_fault_abort(void (*abort_job)(int));

#endif
