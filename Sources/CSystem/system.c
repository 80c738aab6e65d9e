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
#include <sys/stat.h>
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

#define CS_MAPPINGS 1024

static struct {
    _Atomic uintptr_t start, end;
    char path[4096];
} mappings[CS_MAPPINGS];
static pthread_mutex_t mappings_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t handler_once = PTHREAD_ONCE_INIT;
static struct sigaction previous_bus;
static char fault_prefix[128] = "error: ";
static void (*_Atomic fault_abort)(int) = NULL;

static void write_text(const char *s) {
    size_t n = strlen(s);
    while (n > 0) {
        ssize_t w = write(2, s, n);
        if (w <= 0) return;
        s += w; n -= (size_t)w;
    }
}

static void write_number(unsigned long long v) {
    char digits[24];
    int i = (int)sizeof digits;
    digits[--i] = 0;
    do { digits[--i] = (char)('0' + v % 10); v /= 10; } while (v > 0 && i > 0);
    write_text(digits + i);
}

/* Only async-signal-safe calls: strlen, write, stat, sigaction, raise, _exit, lock-free atomics; then the abort hook
   (MPI_Abort: not listed as safe, but the faulting thread is reading a mapped file, not inside MPI; what every MPI
   code's fatal handler does), so that every rank of the job ends, and _exit if it returns. */
static void on_bus(int sig, siginfo_t *info, void *context) {
    uintptr_t a = (uintptr_t)info->si_addr;
    if (info->si_code == BUS_ADRERR) {
        for (int i = 0; i < CS_MAPPINGS; i++) {
            uintptr_t s = atomic_load(&mappings[i].start);
            if (s == 0 || a < s) continue;
            uintptr_t e = atomic_load(&mappings[i].end);
            if (a >= e) continue;
            struct stat st;
            write_text(fault_prefix);
            write_text(mappings[i].path);
            if (stat(mappings[i].path, &st) == 0 && (unsigned long long)st.st_size < (unsigned long long)(e - s)) {
                write_text(": the file shrank from ");
                write_number((unsigned long long)(e - s));
                write_text(" to ");
                write_number((unsigned long long)st.st_size);
                write_text(" bytes while this process read it through its memory map (another program rewrote or truncated "
                           "it in place); run the command again once the file is whole (cladmop writes every output to a "
                           "temporary file and renames it, so its own rewrites never do this)\n");
            } else {
                write_text(": could not be read through its memory map (its storage failed to deliver a page, or the file "
                           "was replaced or shrank in place while read); run the command again once it can be read\n");
            }
            void (*hook)(int) = atomic_load(&fault_abort);
            if (hook) hook(2);
            _exit(2);
        }
    }
    /* Not a watched file's: the action before ours (the runtime's crash report, MPI's, or the default) takes it. A
       fault repeats once this returns. A SIGBUS sent by kill (si_code <= 0) would not: that handler is called here,
       then the default action ends the process, as kill -BUS does without handlers (a crash report's handler returns,
       expecting the fault to repeat: the process had gone on). */
    sigaction(SIGBUS, &previous_bus, NULL);
    if (info->si_code <= 0) {
        if (previous_bus.sa_handler == SIG_IGN) return;
        if ((previous_bus.sa_flags & SA_SIGINFO) && previous_bus.sa_sigaction) previous_bus.sa_sigaction(sig, info, context);
        else if (previous_bus.sa_handler != SIG_DFL) previous_bus.sa_handler(sig);
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        sigemptyset(&dfl.sa_mask);
        sigaction(SIGBUS, &dfl, NULL);
        raise(SIGBUS);      /* blocked in this handler: delivered, by the default action, when it returns */
    }
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

void cs_set_fault_abort(void (*abort_job)(int)) { atomic_store(&fault_abort, abort_job); }

int cs_watch_mapping(const void *start, size_t length, const char *path) {
    if (strlen(path) >= sizeof mappings[0].path) return -1;
    pthread_once(&handler_once, install_handler);
    pthread_mutex_lock(&mappings_lock);
    int slot = -1;
    for (int i = 0; i < CS_MAPPINGS; i++) {
        if (atomic_load(&mappings[i].start) == 0) { slot = i; break; }
    }
    if (slot >= 0) {
        strcpy(mappings[slot].path, path);
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
