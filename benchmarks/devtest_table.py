#!/usr/bin/env python3
"""One markdown row per dev-test evaluation (Launch/devtest writes RUN/phaseN/devtest.json); a run folder without a
phase's evaluation has no row for it. A damaged devtest.json, or a LABEL=RUN_DIR that names no folder, ends it with
exit status 2.
Usage: benchmarks/devtest_table.py LABEL=RUN_DIR ... [--phases 1 2 3]"""
import argparse, json, os, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from devtest_io import BadInput, run_main, run_specs   # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="LABEL=RUN_DIR")
    ap.add_argument("--phases", nargs="+", default=["1", "2", "3"], choices=["1", "2", "3"])
    a = ap.parse_args()
    runs = run_specs(a.runs)
    print("| phase | lever | n | ROC-AUC | PR-AUC | F1 (0.5) | F1 (thr) | thr | all-success F1 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for phase in a.phases:
        for label, run in runs:
            path = os.path.join(run, "phase" + phase, "devtest.json")
            if not os.path.exists(path):
                continue
            try:
                with open(path, encoding="utf-8") as fh:
                    j = json.load(fh)
                c = lambda k: "n/a" if j[k]["mean"] is None else "%.3f ± %s" % (j[k]["mean"], "n/a" if j[k]["std"] is None else "%.3f" % j[k]["std"])   # noqa: E731
                p = j["positives"] / j["n"]
                row = "| %s | %s | %d | %s | %s | %s | %s | %.3f | %.3f |" % (phase, label, j["n"], c("roc_auc"), c("pr_auc"), c("f1"),
                                                                             c("f1_at_threshold"), j["threshold"], 2 * p / (1 + p))
            except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError, RecursionError) as e:
                raise BadInput(f"{path}: expected the JSON of `cladmop evaluate --json` (n, positives, threshold, roc_auc, pr_auc, f1, "
                               f"f1_at_threshold with mean and std): {type(e).__name__} {e}")
            print(row)


if __name__ == "__main__":
    run_main("devtest_table", main)
