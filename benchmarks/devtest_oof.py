#!/usr/bin/env python3
"""Out-of-fold comparison of cross-fitted dev-test runs (Launch/devtest with finetune.folds): per run, ROC-AUC and
PR-AUC of the pooled trials (the phase's "trains on" and "selects" files) each scored by the member that did not
train on it (repeated cross-fitting: the mean of the one such member of each partition), with 95 % percentile bootstrap intervals and the paired difference to the first run (same resamples).
More trials than the dev test (phase I 952, II 357, III 275 against 209 / 89 / 69), but each member chose its epoch
on the fold that holds the trial, so the level is optimistic; runs are compared on the same pool. The dev tests
stay the figures that chose nothing.

Usage: benchmarks/devtest_oof.py --phase N [--resamples 2000] LABEL=RUN_DIR ...
Writes RUN_DIR/phaseN/oof_predictions.csv (nctid,probability) with `cladmop predict --out-of-fold` unless
it is there for the run's current best.json (its checksum in oof_predictions.key), then reads it with the labels of
RUN_DIR/phaseN/folds.csv. Run directories are taken relative to the current directory; the repository's files are
found from this script's place. The pools are Launch/devtest's: each phase's train and selection files (phase I's
--phase1-select temporal files pool the same trials)."""
import hashlib, os, random, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from devtest_calibration import POOL   # noqa: E402
from devtest_compare import arguments, average_precision, cell, paired, roc_auc   # noqa: E402
from devtest_io import BadInput, predict, read_labels, read_probabilities, run_main, run_specs   # noqa: E402


def out_of_fold(run_phase, phase):
    """RUN/phaseN/oof_predictions.csv, written once from the pool files (temporary file, then renamed)."""
    out, key_file = os.path.join(run_phase, "oof_predictions.csv"), os.path.join(run_phase, "oof_predictions.key")
    try:
        with open(os.path.join(run_phase, "best.json"), "rb") as fh:
            key = hashlib.sha256(fh.read()).hexdigest()
    except OSError as e:
        raise BadInput(f"{run_phase}/best.json: cannot read: {e.strerror or e} (a fine-tuned run of Launch/devtest)")
    if os.path.exists(out) and os.path.exists(key_file) and open(key_file).read().strip() == key:
        return out
    scores = {}
    with tempfile.TemporaryDirectory() as tmp:
        for data in POOL[phase]:
            scores.update(predict(run_phase, data, os.path.join(tmp, "scores.csv"), phase, ["--out-of-fold"]))
    with open(out + ".tmp", "w", newline="") as fh:
        fh.write("nctid,probability\n" + "".join(f"{i},{p!r}\n" for i, p in sorted(scores.items())))
    os.replace(out + ".tmp", out)
    with open(key_file + ".tmp", "w") as fh:
        fh.write(key + "\n")
    os.replace(key_file + ".tmp", key_file)
    return out


def main():
    a = arguments()
    runs, labels = [], None
    for name, run in run_specs(a.runs):
        run_phase = os.path.join(run, f"phase{a.phase}")
        folds = os.path.join(run_phase, "folds.csv")
        if not os.path.exists(folds):
            raise BadInput(f"{folds} is missing: not a cross-fitted run (finetune.folds)")
        lab = read_labels(folds, repeats=True)
        if labels is None:
            labels = lab
        elif lab != labels:
            raise BadInput(f"{folds} pools other trials than the first run's: no paired comparison")
        p = read_probabilities(out_of_fold(run_phase, a.phase))
        if set(p) != set(labels):
            raise BadInput(f"{run_phase}/oof_predictions.csv does not score exactly the trials of {folds}")
        runs.append((name, p))
    ids = sorted(labels)
    y = [labels[i] for i in ids]
    metrics = [("ROC-AUC", roc_auc), ("PR-AUC", average_precision)]
    rng = random.Random(a.seed)
    samples = [[rng.randrange(len(ids)) for _ in ids] for _ in range(a.resamples)]
    values = []
    for _, p in runs:
        s = [p[i] for i in ids]
        values.append([(m(s, y), [m([s[k] for k in idx], [y[k] for k in idx]) for idx in samples]) for _, m in metrics])

    print(f"phase {a.phase}: {len(y)} pooled trials of {' + '.join(POOL[a.phase])} ({sum(y)} successful), out of fold; "
          f"95 % bootstrap intervals over {a.resamples} resamples; Δ = paired difference to '{runs[0][0]}'")
    print("| run | ROC-AUC | PR-AUC | Δ ROC-AUC | Δ PR-AUC |")
    print("|---|---|---|---|---|")
    for (name, _), row in zip(runs, values):
        cells = [cell(full, boot) for full, boot in row]
        deltas = [paired(row[m], values[0][m]) for m in range(len(metrics))]
        print(f"| {name} | " + " | ".join(cells + deltas) + " |")


if __name__ == "__main__":
    run_main("devtest_oof", main)
