#!/usr/bin/env bash
# bf16 vs fp32 (issue 19): the kernel table of `bench --kernels` (OpenBLAS, oneDNN fp32, oneDNN bf16 side by side),
# the fp32 fallback line, and W = 2 training throughput in both precisions at full and real-like lengths, plus fp32
# with OpenBLAS forced to its AVX-512 kernels (OPENBLAS_CORETYPE=SkylakeX; see docs/performance.md on why).
# Run from the repository root after `swift build -c release`; about 6 minutes on 2 cores.
set -uo pipefail
B=.build/release/cladmop
ROOT_FLAG=(); [ "$(id -u)" = 0 ] && ROOT_FLAG=(--allow-run-as-root)
MP=(mpirun -np 2 -x OPENBLAS_NUM_THREADS=1 "${ROOT_FLAG[@]}" --bind-to core)
grep -m1 "model name" /proc/cpuinfo; echo "OpenBLAS core: $(OPENBLAS_VERBOSE=2 OPENBLAS_NUM_THREADS=1 $B bench --kernels --seconds 0.01 2>&1 | grep -m1 Core)"
echo "== kernels"; OPENBLAS_NUM_THREADS=1 $B bench --kernels --seconds 0.2
echo "== fallback (forced)"; CLADMOP_FORCE_NO_BF16=1 OPENBLAS_NUM_THREADS=1 $B bench --config configs/bench.yaml --set train.precision=bf16 \
    --set train.global_batch=8 --set bench.steps=1 --set bench.warmup=0 --json 2>&1 | grep -E "warning|\"precision\"" | cut -c1-160
S=(--set bench.steps=3 --set bench.warmup=1 --json)
summary='import sys,json; t=sys.stdin.read(); d=json.loads(t[t.find("{"):]); print({k: d[k] for k in ["precision","samples_per_second","ms_step","ms_forward","ms_backward","ms_optimizer"]})'
for v in bench-full bench; do for p in bf16 fp32; do
    echo "== $v train.precision=$p W=2"; "${MP[@]}" $B bench --config configs/$v.yaml --set train.precision=$p "${S[@]}" 2>&1 | python3 -c "$summary"
done; done
echo "== bench-full fp32 W=2 OPENBLAS_CORETYPE=SkylakeX"
"${MP[@]}" -x OPENBLAS_CORETYPE=SkylakeX $B bench --config configs/bench-full.yaml "${S[@]}" 2>&1 | python3 -c "$summary"
