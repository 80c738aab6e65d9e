#!/usr/bin/env bash
# How bf16 trajectories of W ranks part from one process's (docs/performance.md, "Distributed equivalence in bf16"):
# configs/smoke.yaml on the synthetic store of DistributedEquivalenceTests (240 trials, width 24, seed 3), 20 Adam
# steps at W = 1 and W = W_OTHER (default 3), a checkpoint after every step; prints the parameters' relative
# difference after each step and, after the last, the tensors that hold most of it.
#   benchmarks/bf16_drift.sh [W_OTHER] [LR]      (default 3, 1e-3; run from the repository root after
#                                                  `swift build -c release`; about a minute on 2 cores; python3 with numpy)
set -euo pipefail
W="${1:-3}"; LR="${2:-1e-3}"
B=.build/release/cladmop
T="$(mktemp -d)"; trap 'rm -rf -- "$T"' EXIT
ROOT_FLAG=(); [ "$(id -u)" = 0 ] && ROOT_FLAG=(--allow-run-as-root)
H=data/icd10/icd10cm_2025_hierarchy.tsv
"$B" synth --trials 240 --dim 24 --output "$T/s.store" --seed 3 --set "data.icd_hierarchy=$H" >/dev/null
for w in 1 "$W"; do
    mpirun -np "$w" --oversubscribe "${ROOT_FLAG[@]}" -x OPENBLAS_NUM_THREADS=1 "$B" pretrain --config configs/smoke.yaml \
        --run-dir "$T/w$w" --set data.synthetic=true --set "data.feature_store=$T/s.store" --set "data.icd_hierarchy=$H" \
        --set train.max_steps=20 --set train.epochs=10 --set train.precision=bf16 --set "optimizer.lr=$LR" \
        --set checkpoint.every_steps=1 --set checkpoint.keep_last=30 >/dev/null
done
python3 - "$T/w1" "$T/w$W" "$W" <<'PY'
import json, struct, sys
import numpy as np
def load(run, step):
    b = open(f"{run}/checkpoints/step-{step:08d}.safetensors", "rb").read()
    h = struct.unpack("<Q", b[:8])[0]; head = json.loads(b[8:8 + h])
    return {k: np.frombuffer(b[8 + h + v["data_offsets"][0]:8 + h + v["data_offsets"][1]], dtype=np.float32).astype(np.float64)
            for k, v in head.items() if k != "__metadata__" and not k.startswith("optimizer.")}
one, other, w = sys.argv[1], sys.argv[2], sys.argv[3]
for step in range(1, 21):
    a, b = load(other, step), load(one, step)
    d = sum(((a[k] - b[k]) ** 2).sum() for k in a); n = sum((b[k] ** 2).sum() for k in b)
    print(f"step {step:2d}: W = {w} vs W = 1, parameters' relative difference {np.sqrt(d / n):.2e}")
share = sorted((((a[k] - b[k]) ** 2).sum() / d, k) for k in a)[::-1][:5]
print("after step 20, share of the squared difference: " + ", ".join(f"{k} {s:.2f}" for s, k in share))
PY
