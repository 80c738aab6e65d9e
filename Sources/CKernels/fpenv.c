#include "ckernels.h"
#include <dlfcn.h>

// OpenBLAS (pthread builds) starts its worker threads when the library loads, before main: they keep the
// floating-point mode of that moment. Shutting the pool down makes OpenBLAS start it again, lazily, from the next
// calling thread, whose mode the workers then inherit. Looked up at run time: serial and OpenMP builds may lack it.
int ck_restart_blas_threads(void) {
    int (*threads)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "openblas_get_num_threads");
    int (*shutdown)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "blas_thread_shutdown_");
    if (!threads || !shutdown || threads() <= 1) return 0;
    shutdown();
    return 1;
}
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
// MXCSR: FTZ (bit 15) writes 0 for a subnormal result, DAZ (bit 6) reads a subnormal operand as 0.
#define CK_MXCSR_FTZ_DAZ 0x8040u
int ck_set_flush_denormals(int on) {
    unsigned csr = _mm_getcsr();
    _mm_setcsr(on ? (csr | CK_MXCSR_FTZ_DAZ) : (csr & ~CK_MXCSR_FTZ_DAZ));
    return 1;
}
int ck_flush_denormals(void) { return (_mm_getcsr() & CK_MXCSR_FTZ_DAZ) == CK_MXCSR_FTZ_DAZ; }
#elif defined(__aarch64__)
// FPCR.FZ (bit 24): subnormal operands and results of single and double precision are flushed to zero.
#define CK_FPCR_FZ (1ull << 24)
static unsigned long long ck_fpcr(void) { unsigned long long r; __asm__ volatile("mrs %0, fpcr" : "=r"(r)); return r; }
int ck_set_flush_denormals(int on) {
    unsigned long long r = on ? (ck_fpcr() | CK_FPCR_FZ) : (ck_fpcr() & ~CK_FPCR_FZ);
    __asm__ volatile("msr fpcr, %0" : : "r"(r));
    return 1;
}
int ck_flush_denormals(void) { return (ck_fpcr() & CK_FPCR_FZ) != 0; }
#else
int ck_set_flush_denormals(int on) { (void)on; return 0; }
int ck_flush_denormals(void) { return 0; }
#endif
