#!/usr/bin/env python3
"""One markdown row per dev-test evaluation (Launch/devtest writes RUN/phaseN/devtest.json).
Usage: benchmarks/devtest_table.py LABEL=RUN_DIR ... [--phases 1 2 3]"""
import json, os, sys

args = sys.argv[1:]
phases = ["1", "2", "3"]
if "--phases" in args:
    i = args.index("--phases"); phases = args[i + 1:]; args = args[:i]
print("| phase | lever | n | ROC-AUC | PR-AUC | F1 (0.5) | F1 (thr) | thr | all-success F1 |")
print("|---|---|---|---|---|---|---|---|---|")
for phase in phases:
    for a in args:
        label, run = a.split("=", 1)
        path = os.path.join(run, "phase" + phase, "devtest.json")
        if not os.path.exists(path):
            continue
        j = json.load(open(path))
        c = lambda k: "n/a" if j[k]["mean"] is None else "%.3f ± %.3f" % (j[k]["mean"], j[k]["std"])
        p = j["positives"] / j["n"]
        print("| %s | %s | %d | %s | %s | %s | %s | %.3f | %.3f |" % (phase, label, j["n"], c("roc_auc"), c("pr_auc"), c("f1"),
              c("f1_at_threshold"), j["threshold"], 2 * p / (1 + p)))
