#!/usr/bin/env python3
"""Calibration and threshold rules for a cross-fitted dev-test run (Launch/devtest with finetune.folds), measured on
the development test. Per phase: each member k is Platt-scaled (logistic regression on the logit of its score,
Newton's method) on its own fold's out-of-fold scores; the dev test is scored by the mean of the calibrated members
and compared with the mean of the raw members (ROC-AUC, PR-AUC), and F1 on the dev test at: the run's own threshold
(best.json), the F1-best threshold of the calibrated out-of-fold scores, and F*/2 (the F1-optimal threshold of
calibrated probabilities is half the best F1: Lipton et al., 2014). Standard library + the cladmop binary.

Usage: benchmarks/devtest_calibration.py RUN_DIR [--phases 1,2,3]     (after Launch/devtest --run-dir RUN_DIR)
RUN_DIR is taken relative to the current directory; the repository's files are found from this script's place."""
import argparse, math, os, sys, tempfile
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from devtest_compare import average_precision, f1, roc_auc   # noqa: E402
from devtest_io import ROOT, BadInput, predict, read_folds, read_labels, read_threshold, run_main   # noqa: E402

POOL = {1: ["data/devtest/dev_I_train.csv", "data/top/phase_I_valid.csv"],
        2: ["data/devtest/dev_II_train.csv", "data/devtest/dev_II_select.csv"],
        3: ["data/devtest/dev_III_train.csv", "data/devtest/dev_III_select.csv"]}
TEST = {1: "data/devtest/dev_I_test.csv", 2: "data/devtest/dev_II_test.csv", 3: "data/devtest/dev_III_test.csv"}


def logit(p):
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def platt(x, y, iters=100):
    a, b = 1.0, 0.0
    for _ in range(iters):
        ga = gb = haa = hab = hbb = 0.0
        for xi, yi in zip(x, y):
            p = 1 / (1 + math.exp(-(a * xi + b))); w = p * (1 - p); r = p - yi
            ga += r * xi; gb += r; haa += w * xi * xi; hab += w * xi; hbb += w
        haa += 1e-9; hbb += 1e-9
        det = haa * hbb - hab * hab
        a -= (hbb * ga - hab * gb) / det; b -= (haa * gb - hab * ga) / det
    return lambda s: 1 / (1 + math.exp(-(a * logit(s) + b)))


def best_threshold(s, y):
    bt, bf = 0.5, -1.0
    for t in sorted(set(s)):
        f = f1(s, y, t)
        if f > bf or (f == bf and abs(t - 0.5) < abs(bt - 0.5)):
            bf, bt = f, t
    return bt, bf


def phase_list(text):
    """--phases: comma-separated phases among 1, 2, 3."""
    phases = [p.strip() for p in text.split(",")]
    if not phases or any(p not in ("1", "2", "3") for p in phases):
        raise argparse.ArgumentTypeError(f"{text}: expected phases among 1, 2, 3, comma-separated (1,2,3)")
    return [int(p) for p in phases]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run"); ap.add_argument("--phases", default="1,2,3", type=phase_list)
    a = ap.parse_args()
    if not os.path.isdir(a.run):
        raise BadInput(f"{a.run}: not a folder (a run folder of Launch/devtest --run-dir)")
    a.run = os.path.abspath(a.run)
    print(f"{a.run}: raw = mean of the members as cladmop predicts; calibrated = mean of the Platt-scaled members")
    print("| phase | ROC-AUC raw / calibrated | PR-AUC raw / calibrated | F1 at best.json threshold (raw) | F1 calibrated, OOF-best threshold | F1 calibrated, F*/2 | all-success F1 |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for phase in a.phases:
            run = os.path.join(a.run, f"phase{phase}")
            entries = read_folds(os.path.join(run, "folds.csv"))
            if any(len(e) > 1 for e in entries.values()):     # repeated cross-fitting (finetune.ensemble with finetune.folds)
                raise BadInput(f"{run}/folds.csv lists trials in several partitions (finetune.ensemble > 1 with finetune.folds): "
                               "each member is calibrated on its one fold here; fine-tune with --set finetune.ensemble=1, or give --phases")
            folds = {i: e[0] for i, e in entries.items()}
            k_count = max(f for f, _ in folds.values())
            oof = {}
            for i, f in enumerate(POOL[phase]):
                oof.update(predict(run, f, f"{tmp}/oof{phase}-{i}.csv", phase, ["--out-of-fold"]))
            labels = read_labels(os.path.join(ROOT, TEST[phase]))
            ids = list(labels); y = [labels[i] for i in ids]
            members = [predict(os.path.join(run, "members", str(k)), TEST[phase], f"{tmp}/m{phase}-{k}.csv", phase) for k in range(1, k_count + 1)]
            raw = [sum(m[i] for m in members) / k_count for i in ids]
            cal, oof_cal = [0.0] * len(ids), {}
            for k in range(1, k_count + 1):
                held = [i for i in folds if folds[i][0] == k]
                g = platt([logit(oof[i]) for i in held], [folds[i][1] for i in held])
                for i in held: oof_cal[i] = g(oof[i])
                for j, i in enumerate(ids): cal[j] += g(members[k - 1][i]) / k_count
            t_oof, f_oof = best_threshold(list(oof_cal.values()), [folds[i][1] for i in oof_cal])
            thr = read_threshold(os.path.join(run, "best.json"))
            p = sum(y) / len(y)
            print(f"| {phase} | {roc_auc(raw, y):.3f} / {roc_auc(cal, y):.3f} | {average_precision(raw, y):.3f} / {average_precision(cal, y):.3f} | "
                  f"{f1(raw, y, thr):.3f} (at {thr:.3f}) | {f1(cal, y, t_oof):.3f} (at {t_oof:.3f}) | {f1(cal, y, f_oof / 2):.3f} (at {f_oof / 2:.3f}) | {2 * p / (1 + p):.3f} |")


if __name__ == "__main__":
    run_main("devtest_calibration", main)
