#!/usr/bin/env bash
# The multi-node outside check, as a stranger would run it (root): two network namespaces of its own on a bridge
# (10.77.5.0/24; no Launch/cluster, no host names of their own), a minimal `ip netns exec` launch agent, a plain
# `mpirun --hostfile H --mca btl self,tcp`. Prints
#   1. the norm-relative difference of the parameters after 10 SGD steps, W = 2 across the namespaces vs W = 1
#      (smoke model, synthetic store; bound 1e-4);
#   2. the seconds from one namespace's link going down (at step 30 of a long run, default train.stall_timeout)
#      to the job's end, its exit status and the watchdog's message.
# Everything it makes (namespaces, veths, bridge, WORK) is removed on exit, also on failure.
#   Tests/Cluster/own_agent_check.sh [CLADMOP]          (default .build/release/cladmop)
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
C="$(realpath "${1:-$ROOT/.build/release/cladmop}")"
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)" >&2; exit 2; }
W="$(mktemp -d /tmp/own-agent-check.XXXXXX)"
cleanup() {
    for n in oac0 oac1; do
        for p in $(ip netns pids $n 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
        ip netns del $n 2>/dev/null; ip link del v$n 2>/dev/null
    done
    ip link del oacbr 2>/dev/null; rm -rf "$W"
}
trap cleanup EXIT
cleanup; mkdir -p "$W"
set -e
ip link add oacbr type bridge; ip addr add 10.77.5.1/24 dev oacbr; ip link set oacbr up
i=10
for n in oac0 oac1; do
    ip netns add $n; ip link add v$n type veth peer name e$n; ip link set e$n netns $n
    ip netns exec $n ip addr add 10.77.5.$i/24 dev e$n; ip netns exec $n ip link set e$n up; ip netns exec $n ip link set lo up
    ip link set v$n master oacbr; ip link set v$n up; i=$((i + 1))
done
cat > "$W/agent" <<'A'
#!/bin/sh
while [ $# -gt 0 ]; do case "$1" in -*) shift ;; *) break ;; esac; done
h="$1"; shift
exec ip netns exec "$h" sh -c "$*"
A
chmod +x "$W/agent"
printf 'oac0 slots=1\noac1 slots=1\n' > "$W/hosts"
set +e
H="$ROOT/data/icd10/icd10cm_2025_hierarchy.tsv"
"$C" synth --trials 240 --dim 24 --output "$W/s.store" --seed 3 --set data.icd_hierarchy="$H" >/dev/null || exit 1
common=(--config "$ROOT/configs/smoke.yaml" --set data.synthetic=true --set data.feature_store="$W/s.store" --set data.icd_hierarchy="$H"
        --set optimizer.name=sgd --set optimizer.lr=0.05 --set train.epochs=1000)
M=(mpirun --allow-run-as-root -x OPENBLAS_NUM_THREADS=1 --mca plm_rsh_agent "$W/agent" --mca btl self,tcp
   --mca btl_tcp_if_include 10.77.5.0/24 --mca oob_tcp_if_include 10.77.5.0/24 --hostfile "$W/hosts")
OPENBLAS_NUM_THREADS=1 "$C" pretrain "${common[@]}" --set train.max_steps=10 --run-dir "$W/w1" > "$W/w1.log" 2>&1 || { cat "$W/w1.log"; exit 1; }
"${M[@]}" -np 2 "$C" pretrain "${common[@]}" --set train.max_steps=10 --run-dir "$W/w2" > "$W/w2.log" 2>&1 || { cat "$W/w2.log"; exit 1; }
python3 - "$W" <<'PY'
import json, struct, sys
def tensors(path):
    raw = open(path, "rb").read(); n = struct.unpack("<Q", raw[:8])[0]; head = json.loads(raw[8:8 + n]); out = {}
    for k, v in head.items():
        if k == "__metadata__" or k.startswith("optimizer."): continue
        a, b = v["data_offsets"]; out[k] = struct.unpack(f"<{(b - a) // 4}f", raw[8 + n + a:8 + n + b])
    return out
x, y = (tensors(f"{sys.argv[1]}/{r}/checkpoints/step-00000010.safetensors") for r in ("w1", "w2"))
d = sum((p - q) ** 2 for k in x for p, q in zip(x[k], y[k])); s = sum(p * p for k in x for p in x[k])
print(f"W = 2 across 2 namespaces vs W = 1, parameters after 10 SGD steps: norm-relative difference {(d / s) ** 0.5:.2e}")
PY
"${M[@]}" -np 2 "$C" pretrain "${common[@]}" --set train.max_steps=1000000 --set train.log_every=10 --run-dir "$W/part" > "$W/part.log" 2>&1 &
job=$!
for _ in $(seq 1200); do grep -q '"step":30,' "$W/part/metrics.jsonl" 2>/dev/null && break; sleep 0.1; done
ip link set voac1 down; t0=$(date +%s.%N)
for _ in $(seq 3000); do kill -0 $job 2>/dev/null || break; sleep 0.1; done
kill -0 $job 2>/dev/null && { echo "partition: the job still runs 300 s after the link went down"; kill -9 $job; exit 1; }
wait $job; status=$?; t1=$(date +%s.%N)
echo "partition: the job ended $(python3 -c "print(round($t1 - $t0, 1))") s after oac1's link went down, exit status $status"
grep -m1 "stopped answering" "$W/part.log"
