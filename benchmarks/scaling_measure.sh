#!/usr/bin/env bash
# The measurements of docs/scaling.md, on an emulated cluster of this machine (Launch/cluster; root):
#   benchmarks/scaling_measure.sh OUT [RATE]        (RATE: tc rate of every node's link, default 1gbit)
# 1. `cladmop bench --collectives` at W = 2, 3, 4 (one rank per emulated node)       -> OUT/coll-wW.json
# 2. `cladmop bench` at W = 1 for the paper's model (configs/bench.yaml) and the main job's (configs/pretrain.yaml
#    with the bench's synthetic lengths)                                                -> OUT/compute-{paper,main}.json
# 3. the same benches at W = 2, 3, 4 across the emulated nodes, with the blocking all-reduce that the model
#    describes (train.bucket_mb=0; benchmarks/overlap_measure.sh compares it with the overlapped one) -> OUT/step-{paper,main}-wW.json
# then benchmarks/scaling_model.py fits and projects (the command is printed at the end). The cluster is removed
# on exit, also on failure.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../Launch/common.sh"
out="${1:?usage: benchmarks/scaling_measure.sh OUT [RATE]}"; rate="${2:-1gbit}"
cd "$ROOT"
mkdir -p "$out"
name=scal
trap '"$ROOT/Launch/cluster" down --name $name >/dev/null 2>&1 || true' EXIT
"$ROOT/Launch/cluster" up 4 --bandwidth "$rate" --name "$name" --owner $$
hostfile="$("$ROOT/Launch/cluster" hostfile --name "$name")"
json() { sed -n '/^{/,$p'; }
for w in 2 3 4; do
    mapfile -t line < <(mpirun_line "$w" "$hostfile")
    echo "collectives, W = $w over $rate"
    "${line[@]}" "$CLADMOP" bench --collectives --seconds 0.3 --json | json > "$out/coll-w$w.json"
done
"$CLADMOP" bench --config configs/bench.yaml --json | json > "$out/compute-paper.json"
"$CLADMOP" bench --config configs/pretrain.yaml --json | json > "$out/compute-main.json"
for w in 2 3 4; do
    mapfile -t line < <(mpirun_line "$w" "$hostfile")
    for model in paper main; do
        config=configs/bench.yaml; [ "$model" = main ] && config=configs/pretrain.yaml
        echo "step, $model model, W = $w over $rate"
        "${line[@]}" "$CLADMOP" bench --config "$config" --set train.bucket_mb=0 --json | json > "$out/step-$model-w$w.json"
    done
done
# RATE in Gbit/s for the model (Launch/cluster up has checked its form: a number and a tc unit).
gbit=$(awk -v r="$rate" 'BEGIN { match(r, /[a-z]+$/); u = substr(r, RSTART)
    m["bit"] = 1e-9; m["kbit"] = 1e-6; m["mbit"] = 1e-3; m["gbit"] = 1; m["tbit"] = 1e3
    m["bps"] = 8e-9; m["kbps"] = 8e-6; m["mbps"] = 8e-3; m["gbps"] = 8; m["tbps"] = 8e3
    printf "%.6g\n", (r + 0) * m[u] }')
echo "python3 benchmarks/scaling_model.py --cores $(nproc) --out $out/model --compute paper=$out/compute-paper.json --compute main=$out/compute-main.json $(for w in 2 3 4; do printf -- '--collectives %s=%s ' "$gbit" "$out/coll-w$w.json"; done)$(for w in 2 3 4; do for m in paper main; do printf -- '--measured %s:%s=%s ' "$gbit" "$m" "$out/step-$m-w$w.json"; done; done)"
