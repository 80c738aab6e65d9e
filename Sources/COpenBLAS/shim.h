// OpenBLAS's CBLAS interface (libopenblas-dev installs it in the multiarch include folder).
// Only Sources/NN/Core/BLAS.swift imports this.
#pragma once
#include <cblas.h>
