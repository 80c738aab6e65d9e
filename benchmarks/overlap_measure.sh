#!/usr/bin/env bash
# Blocking against overlapped gradient all-reduce across emulated nodes (docs/scaling.md; root):
#   benchmarks/overlap_measure.sh OUT [RATE ...]        (RATEs: tc rates of every node's link, default 1gbit 10gbit 25gbit)
# For each rate: a 2-node cluster (Launch/cluster, one rank per node), then `cladmop bench` on the paper's model
# (configs/bench.yaml, 3 steps after 1 warm-up) with train.bucket_mb = 0 (one blocking all-reduce after backward)
# and 4 (the default: buckets all-reduced while backward runs), back to back, twice each -> OUT/overlap-RATE-bMB-REP.json,
# and a table of the exposed all-reduce on stdout. The cluster is removed on exit, also on failure.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../Launch/common.sh"
out="${1:?usage: benchmarks/overlap_measure.sh OUT [RATE ...]}"; shift
rates=("$@"); [ ${#rates[@]} -gt 0 ] || rates=(1gbit 10gbit 25gbit)
cd "$ROOT"
mkdir -p "$out"
name=ovl
trap '"$ROOT/Launch/cluster" down --name $name >/dev/null 2>&1 || true' EXIT
json() { sed -n '/^{/,$p'; }
for rate in "${rates[@]}"; do
    "$ROOT/Launch/cluster" up 2 --bandwidth "$rate" --name "$name" --owner $$ >/dev/null
    mapfile -t line < <(mpirun_line 2 "$("$ROOT/Launch/cluster" hostfile --name "$name")")
    for rep in 1 2; do
        for mb in 0 4; do
            echo "W = 2 over $rate, train.bucket_mb=$mb, run $rep" >&2
            "${line[@]}" "$CLADMOP" bench --config configs/bench.yaml --json --set bench.steps=3 --set bench.warmup=1 \
                --set train.bucket_mb=$mb | json > "$out/overlap-$rate-b$mb-$rep.json"
        done
    done
done
python3 - "$out" "${rates[@]}" <<'PY'
import json, sys
out, rates = sys.argv[1], sys.argv[2:]
print("| link | `train.bucket_mb` | ms/step | backward | all-reduce exposed after backward | samples/s |")
print("|---|---|---|---|---|---|")
for rate in rates:
    for mb in (0, 4):
        runs = [json.load(open(f"{out}/overlap-{rate}-b{mb}-{r}.json")) for r in (1, 2)]
        f = lambda k, fmt="{:,.0f}": " / ".join(fmt.format(d[k]) for d in runs)
        label = "0 (blocking)" if mb == 0 else f"{mb} (default)"
        print(f"| {rate} | {label} | {f('ms_step')} | {f('ms_backward')} | {f('ms_allreduce')} | {f('samples_per_second', '{:.1f}')} |")
PY
