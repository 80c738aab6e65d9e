#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#ifndef _FILE_OFFSET_BITS
#define _FILE_OFFSET_BITS 64
#endif
#include "csystem.h"
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

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

/* --- Mapped files that change under their map (cs_watch_mapping) ------------------------------------------------ */

#define CS_MAPPINGS 4096

static struct {
    _Atomic uintptr_t start, end;
    char path[1024];
} mappings[CS_MAPPINGS];
static pthread_mutex_t mappings_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t handler_once = PTHREAD_ONCE_INIT;
static struct sigaction previous_bus;
static char fault_prefix[128] = "error: ";

static void write_text(const char *s) {
    size_t n = strlen(s);
    while (n > 0) {
        ssize_t w = write(2, s, n);
        if (w <= 0) return;
        s += w; n -= (size_t)w;
    }
}

static void on_bus(int sig, siginfo_t *info, void *context) {
    (void)sig; (void)context;
    uintptr_t a = (uintptr_t)info->si_addr;
    for (int i = 0; i < CS_MAPPINGS; i++) {
        uintptr_t s = atomic_load(&mappings[i].start);
        if (s != 0 && a >= s && a < atomic_load(&mappings[i].end)) {
            write_text(fault_prefix);
            write_text(mappings[i].path);
            write_text(": the file shrank while this process read it through its memory map (another program rewrote or "
                       "truncated it in place); run the command again once the file is whole (cladmop writes every output "
                       "to a temporary file and renames it, so its own rewrites never do this)\n");
            _exit(2);
        }
    }
    /* Not a watched file's: the action before ours (the runtime's crash report, or the default) takes the access again. */
    sigaction(SIGBUS, &previous_bus, NULL);
}

static void install_handler(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_bus;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, &previous_bus);
}

void cs_set_fault_prefix(const char *prefix) {
    size_t n = strlen(prefix);
    if (n >= sizeof fault_prefix) n = sizeof fault_prefix - 1;
    memcpy(fault_prefix, prefix, n);
    fault_prefix[n] = 0;
}

int cs_watch_mapping(const void *start, size_t length, const char *path) {
    pthread_once(&handler_once, install_handler);
    pthread_mutex_lock(&mappings_lock);
    int slot = -1;
    for (int i = 0; i < CS_MAPPINGS; i++) {
        if (atomic_load(&mappings[i].start) == 0) { slot = i; break; }
    }
    if (slot >= 0) {
        size_t n = strlen(path);
        if (n >= sizeof mappings[slot].path) n = sizeof mappings[slot].path - 1;
        memcpy(mappings[slot].path, path, n);
        mappings[slot].path[n] = 0;
        atomic_store(&mappings[slot].end, (uintptr_t)start + length);
        atomic_store(&mappings[slot].start, (uintptr_t)start);     /* last: the slot is whole once it is set */
    }
    pthread_mutex_unlock(&mappings_lock);
    return slot;
}

void cs_unwatch_mapping(int slot) {
    if (slot < 0 || slot >= CS_MAPPINGS) return;
    atomic_store(&mappings[slot].start, 0);
}
