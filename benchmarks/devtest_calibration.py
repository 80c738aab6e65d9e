#!/usr/bin/env python3
"""Calibration and threshold rules for a cross-fitted dev-test run (Launch/devtest with finetune.folds), measured on
the development test. Per phase: each member k is Platt-scaled (logistic regression on the logit of its score,
Newton's method) on its own fold's out-of-fold scores; the dev test is scored by the mean of the calibrated members
and compared with the mean of the raw members (ROC-AUC, PR-AUC), and F1 on the dev test at: the run's own threshold
(best.json), the F1-best threshold of the calibrated out-of-fold scores, and F*/2 (the F1-optimal threshold of
calibrated probabilities is half the best F1: Lipton et al., 2014). Standard library + the cladmop binary.

Usage: benchmarks/devtest_calibration.py RUN_DIR [--phases 1,2,3]     (after Launch/devtest --run-dir RUN_DIR)"""
import argparse, csv, json, math, os, subprocess, sys, tempfile
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from devtest_compare import average_precision, f1, roc_auc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLADMOP = os.path.join(ROOT, ".build/release/cladmop")
POOL = {1: ["data/devtest/dev_I_train.csv", "data/top/phase_I_valid.csv"],
        2: ["data/devtest/dev_II_train.csv", "data/devtest/dev_II_select.csv"],
        3: ["data/devtest/dev_III_train.csv", "data/devtest/dev_III_select.csv"]}
TEST = {1: "data/devtest/dev_I_test.csv", 2: "data/devtest/dev_II_test.csv", 3: "data/devtest/dev_III_test.csv"}


def predict(checkpoint, data, out, phase, extra=()):
    # The run's own configuration (its encoder.model_dir and data.feature_store: a run on another encoder is scored
    # with that encoder's vectors), else the phase's config.
    config, folder = None, os.path.join(ROOT, checkpoint)
    for _ in range(3):      # RUN, or RUN/members/k: the first config.yaml up from the checkpoint
        if os.path.isfile(os.path.join(folder, "config.yaml")):
            config = os.path.join(folder, "config.yaml")
            break
        folder = os.path.dirname(folder)
    config = config or f"configs/finetune-phase{phase}.yaml"
    subprocess.run([CLADMOP, "predict", "--config", config, "--checkpoint", checkpoint,
                    *extra, "--data", data, "--output", out], cwd=ROOT, check=True, capture_output=True)
    return {r["nctid"]: float(r["probability"]) for r in csv.DictReader(open(out))}


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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run"); ap.add_argument("--phases", default="1,2,3")
    a = ap.parse_args()
    print(f"{a.run}: raw = mean of the members as cladmop predicts; calibrated = mean of the Platt-scaled members")
    print("| phase | ROC-AUC raw / calibrated | PR-AUC raw / calibrated | F1 at best.json threshold (raw) | F1 calibrated, OOF-best threshold | F1 calibrated, F*/2 | all-success F1 |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for phase in map(int, a.phases.split(",")):
            run = os.path.join(a.run, f"phase{phase}")
            rows = list(csv.DictReader(open(os.path.join(run, "folds.csv"))))
            folds = {r["nctid"]: (int(r["fold"]), int(r["label"])) for r in rows}
            if len(folds) != len(rows):     # repeated cross-fitting (finetune.ensemble with finetune.folds)
                sys.exit(f"devtest_calibration: {run}/folds.csv lists trials in several partitions (finetune.ensemble > 1 with "
                         "finetune.folds): each member is calibrated on its one fold here; run with --set finetune.ensemble=1")
            k_count = max(f for f, _ in folds.values())
            oof = {}
            for i, f in enumerate(POOL[phase]):
                oof.update(predict(run, f, f"{tmp}/oof{phase}-{i}.csv", phase, ["--out-of-fold"]))
            labels = {r["nctid"]: int(r["label"]) for r in csv.DictReader(open(os.path.join(ROOT, TEST[phase])))}
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
            thr = json.load(open(os.path.join(run, "best.json")))["threshold"]
            p = sum(y) / len(y)
            print(f"| {phase} | {roc_auc(raw, y):.3f} / {roc_auc(cal, y):.3f} | {average_precision(raw, y):.3f} / {average_precision(cal, y):.3f} | "
                  f"{f1(raw, y, thr):.3f} (at {thr:.3f}) | {f1(cal, y, t_oof):.3f} (at {t_oof:.3f}) | {f1(cal, y, f_oof / 2):.3f} (at {f_oof / 2:.3f}) | {2 * p / (1 + p):.3f} |")


if __name__ == "__main__":
    main()
