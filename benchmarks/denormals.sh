#!/usr/bin/env bash
# Subnormal floats (docs/performance.md): phase I fine-tuning of one model at the paper's phase I/II rates (head 1e-2,
# LoRA 5e-2), where saturated attention fills the GEMMs with subnormals, with them kept (CLADMOP_DENORMALS=keep, IEEE
# gradual underflow) and flushed to zero (the default), alternately, twice each; then the repository's rates (1e-3),
# where none arise and both modes give the same models. Prints wall seconds and the selected epoch's line per run.
# Usage (from the repository root, after `swift build -c release`): benchmarks/denormals.sh PRETRAINED_RUN
#   (e.g. runs/main); about 3 minutes on 2 cores. Scratch runs go to a temporary directory, removed at the end.
set -uo pipefail
[ $# -eq 1 ] && [ -d "$1" ] || { echo "usage: benchmarks/denormals.sh PRETRAINED_RUN_DIR" >&2; exit 2; }
pretrained="$1"
B=.build/release/cladmop
ROOT_FLAG=(); [ "$(id -u)" = 0 ] && ROOT_FLAG=(--allow-run-as-root)
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
grep -m1 "model name" /proc/cpuinfo
run() {   # run MODE LABEL [--set ...]
    local mode="$1" label="$2"; shift 2
    local s e
    s=$(date +%s.%N)
    CLADMOP_DENORMALS="$mode" mpirun -np 2 -x OPENBLAS_NUM_THREADS=1 -x CLADMOP_DENORMALS "${ROOT_FLAG[@]}" --bind-to core \
        "$B" finetune --config configs/finetune-phase1.yaml --pretrained "$pretrained" \
        --train data/top/phase_I_train.csv --valid data/top/phase_I_valid.csv --run-dir "$tmp/$label-$mode" \
        --set finetune.folds=0 --set finetune.ensemble=1 --set finetune.epochs=4 --set log.tensorboard=false "$@" \
        > "$tmp/$label-$mode.log" 2>&1 || { echo "run $label $mode failed:"; tail -5 "$tmp/$label-$mode.log"; }
    e=$(date +%s.%N)
    printf "%-7s %-5s %6.1f s  %s\n" "$label" "$mode" "$(echo "$e - $s" | bc)" "$(grep -m1 'selected epoch' "$tmp/$label-$mode.log" | sed 's/, [^ ]*safetensors//')"
}
for i in 1 2; do for mode in keep flush; do
    run "$mode" paper$i --set finetune.head_lr=1e-2 --set finetune.lora_lr=5e-2
done; done
for mode in keep flush; do run "$mode" repo; done
