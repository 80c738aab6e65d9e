// oneDNN's C API (Debian libdnnl-dev 2.6; no dnnl.pc, so the module links libdnnl directly).
// Only Sources/NN/Core/OneDNN.swift imports this.
#pragma once
#include <oneapi/dnnl/dnnl.h>
#include <dlfcn.h>

// libdnnl (Debian) runs on OpenMP: its thread count is libgomp's. libgomp is a dependency of libdnnl, not of
// cladmop, so the setter is looked up at run time. Returns 0 when it was found and called.
static inline int cdnnl_set_omp_threads(int n) {
    void (*set)(int) = (void (*)(int))dlsym(RTLD_DEFAULT, "omp_set_num_threads");
    if (!set) return -1;
    set(n);
    return 0;
}
