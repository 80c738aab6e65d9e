#!/usr/bin/env python3
"""F1-threshold rules for cross-fitted runs (Launch/devtest with finetune.folds), measured on the development tests.
For each run and phase the run's out-of-fold scores of its pooled train + selection files (`cladmop predict
--out-of-fold`, cached in --cache) choose a threshold by each rule, and F1 at that threshold is computed on the run's
dev-test predictions (devtest_predictions.csv, the mean of the members). Rules:
  bagged   round 2's rule: the median over 200 bootstrap resamples of each resample's F1-best threshold;
  gainC    Metrics.riskAverseF1Threshold at confidence C as it was until round 10: the threshold maximising the
           (1 - C) quantile over 200 bootstrap resamples of F1(t) - F1(every trial successful); the lowest on ties
           (the lowest score predicts every pooled trial successful, and is the threshold when no cut gains);
  gain0.9/2000  the binary's rule since round 10: the same at C = 0.9 over 2,000 resamples, and 0 (every trial
           successful) when no cut gains (since session 32 the binary places a cut halfway between that score and
           the next lower one: the same pooled trials cut; here the score itself, as the tables of docs/outcome.md).
The rules are re-implemented here with Python's resamples, on the 6-decimal scores of `predict` (the binary's own
threshold, on unrounded scores, is in each run's best.json).
Prints, per phase, each run's thresholds and dev-test F1, then per rule and phase: runs at or above the all-success
F1, mean / min / max of F1 - all-success F1. Standard library + the cladmop binary.

Usage: benchmarks/devtest_threshold.py RUN_DIR [RUN_DIR ...] [--cache DIR]
Run folders are taken relative to the current directory; the repository's files are found from this script's place."""
import argparse, bisect, hashlib, os, random, statistics, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from devtest_compare import f1   # noqa: E402
from devtest_calibration import POOL, TEST   # noqa: E402
from devtest_io import ROOT, BadInput, predict, read_labels, read_probabilities, run_main   # noqa: E402

RULES = ["bagged", "gain0.5", "gain0.75", "gain0.9", "gain0.9/2000"]


read = read_probabilities


def resamples(n, count=200, seed=0):
    rng = random.Random(seed)
    return [[rng.randrange(n) for _ in range(n)] for _ in range(count)]


def best_threshold(s, y):
    """F1-best threshold (predict s >= t); the highest F1, then the one nearest 0.5 (Metrics.bestF1Threshold's choice;
    since session 33 the binary places it halfway down to the next lower score, the same trials cut: here the score
    itself, as the tables of docs/outcome.md)."""
    bt, bf = 0.5, -1.0
    order = sorted(range(len(s)), key=lambda i: -s[i]); pos = sum(y); tp = fp = 0; i = 0
    while i < len(order):
        t = s[order[i]]
        while i < len(order) and s[order[i]] == t:
            tp += y[order[i]]; fp += 1 - y[order[i]]; i += 1
        f = 2 * tp / (tp + fp + pos) if tp else 0.0
        if f > bf or (f == bf and abs(t - 0.5) < abs(bt - 0.5)):
            bf, bt = f, t
    return bt


def bagged(s, y):
    th = [best_threshold([s[i] for i in idx], [y[i] for i in idx]) for idx in resamples(len(s)) if any(y[i] for i in idx)]
    return statistics.median(th)


def gain_quantile(s, y, confidence, count=200, no_cut=None):
    """The rule's threshold; `no_cut` (when given) replaces the lowest score as the threshold when no cut gains."""
    candidates = sorted(set(s)); gains = {t: [] for t in candidates}
    for idx in resamples(len(s), count):
        yy = [y[i] for i in idx]; p = sum(yy)
        if p == 0:
            continue
        pos = sorted(s[i] for i in idx if y[i]); neg = sorted(s[i] for i in idx if not y[i])
        base = 2 * p / (p + len(idx))
        for t in candidates:
            tp = len(pos) - bisect.bisect_left(pos, t); fp = len(neg) - bisect.bisect_left(neg, t)
            gains[t].append((2 * tp / (tp + fp + p) if tp else 0.0) - base)
    rank = int((1 - confidence) * (len(gains[candidates[0]]) - 1) + 1e-9)    # 1 - 0.9 = 0.0999...
    best, best_gain = candidates[0], -float("inf")
    for t in candidates:
        q = sorted(gains[t])[rank]
        if q > best_gain:
            best, best_gain = t, q
    return no_cut if no_cut is not None and best == candidates[0] else best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+"); ap.add_argument("--cache", default="/tmp/devtest_threshold")
    a = ap.parse_args()
    a.cache = os.path.abspath(a.cache)     # predict runs in the repository root
    for run in a.runs:
        if not all(os.path.isdir(os.path.join(run, f"phase{phase}")) for phase in (1, 2, 3)):
            raise BadInput(f"{run}: expected a run folder of Launch/devtest with phase1, phase2 and phase3")
    os.makedirs(a.cache, exist_ok=True)
    summary = {}
    for phase in (1, 2, 3):
        labels = read_labels(os.path.join(ROOT, TEST[phase]))
        ids = list(labels); y = [labels[i] for i in ids]; p = sum(y) / len(y); all_success = 2 * p / (1 + p)
        print(f"\nphase {phase}: {TEST[phase]}, {len(ids)} trials, all-success F1 {all_success:.3f}")
        print("| run | " + " | ".join(f"{r} thr / F1" for r in RULES) + " |")
        print("|---|" + "---|" * len(RULES))
        for run in a.runs:
            d = os.path.abspath(os.path.join(run, f"phase{phase}"))
            folds = read_labels(os.path.join(d, "folds.csv"), repeats=True)
            oof = {}
            for j, f in enumerate(POOL[phase]):
                # keyed by the run's best.json too: a run folder made again is scored again
                try:
                    key = hashlib.sha256(open(os.path.join(d, "best.json"), "rb").read()).hexdigest()[:12]
                except OSError as e:
                    raise BadInput(f"{d}/best.json: cannot read: {e.strerror or e}")
                out = os.path.join(a.cache, f"{run.strip('/').replace('/', '_')}-{phase}-{j}-{key}.csv")
                oof.update(read(out) if os.path.exists(out) else predict(d, f, out, phase, ["--out-of-fold"]))
            pool = sorted(folds); so = [oof[i] for i in pool]; py = [folds[i] for i in pool]
            test = read(os.path.join(d, "devtest_predictions.csv"))
            if set(test) != set(ids):
                raise BadInput(f"{d}/devtest_predictions.csv does not score exactly the trials of {TEST[phase]}")
            s = [test[i] for i in ids]
            cells = []
            for rule in RULES:
                if rule == "bagged":
                    t = bagged(so, py)
                elif rule == "gain0.9/2000":
                    t = gain_quantile(so, py, 0.9, count=2000, no_cut=min(0.0, min(so)))
                else:
                    t = gain_quantile(so, py, float(rule[4:]))
                score = f1(s, y, t)
                summary.setdefault((rule, phase), []).append(score - all_success)
                cells.append(f"{t:.3f} / {score:.3f}")
            print(f"| {os.path.basename(run.rstrip('/'))} | " + " | ".join(cells) + " |")
    print(f"\nper rule: F1 (thr) - all-success F1 on the dev test over the {len(a.runs)} runs")
    print("| rule | phase | runs at or above all-success | mean | min | max |")
    print("|---|---|---|---|---|---|")
    for rule in RULES:
        for phase in (1, 2, 3):
            v = summary[(rule, phase)]
            print(f"| {rule} | {phase} | {sum(x >= -1e-12 for x in v)} of {len(v)} | {sum(v) / len(v):+.4f} | {min(v):+.3f} | {max(v):+.3f} |")


if __name__ == "__main__":
    run_main("devtest_threshold", main)
