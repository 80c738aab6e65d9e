#!/usr/bin/env python3
"""Dev-test comparison of fine-tuning runs (Launch/devtest): per run, ROC-AUC, PR-AUC (average precision, as
`cladmop evaluate` computes it), F1 at 0.5 and F1 at the run's validation threshold (best.json), each with a 95 %
percentile bootstrap interval (resampling the dev-test trials with replacement), and the paired difference to the
first run (same resamples) of ROC-AUC, PR-AUC and F1 (thr) with its interval. Standard library only.

Usage: benchmarks/devtest_compare.py --phase N [--resamples 2000] LABEL=RUN_DIR ...
Reads RUN_DIR/phaseN/devtest_predictions.csv (nctid,probability), RUN_DIR/phaseN/best.json (threshold) and the
labels of data/devtest/dev_<roman>_test.csv (found from this script's place; run folders are taken relative to the
current directory). A damaged file (a probability that is not a number in [0, 1], a trial listed twice, a best.json
without a threshold) ends it with exit status 2 naming the file and line (devtest_io)."""
import argparse, os, random, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from devtest_io import ROOT, BadInput, read_labels, read_probabilities, read_threshold, run_main, run_specs   # noqa: E402


def roc_auc(s, y):
    pos = sum(y); neg = len(y) - pos
    if pos == 0 or neg == 0:
        return float("nan")
    order = sorted(range(len(s)), key=lambda i: s[i])
    rank_sum, i = 0.0, 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and s[order[j + 1]] == s[order[i]]:
            j += 1
        avg = (i + j) / 2 + 1
        rank_sum += sum(avg for k in range(i, j + 1) if y[order[k]] == 1)
        i = j + 1
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)


def average_precision(s, y):
    pos = sum(y)
    if pos == 0:
        return float("nan")
    order = sorted(range(len(s)), key=lambda i: -s[i])
    tp = fp = 0; ap = last = 0.0; i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and s[order[j + 1]] == s[order[i]]:
            j += 1
        for k in range(i, j + 1):
            if y[order[k]] == 1: tp += 1
            else: fp += 1
        r = tp / pos
        ap += (r - last) * tp / (tp + fp); last = r
        i = j + 1
    return ap


def f1(s, y, t):
    tp = sum(1 for a, b in zip(s, y) if a >= t and b == 1)
    fp = sum(1 for a, b in zip(s, y) if a >= t and b == 0)
    fn = sum(1 for a, b in zip(s, y) if a < t and b == 1)
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


ROMAN = {1: "I", 2: "II", 3: "III"}
DELTAS = (0, 1, 3)   # paired differences of ROC-AUC, PR-AUC and F1 at the run's threshold


def resample_count(text):
    """--resamples: an integer of at least 10 (a percentile interval of fewer is no interval)."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 10:
        raise argparse.ArgumentTypeError(f"{text}: expected an integer of at least 10")
    return n


def arguments():
    """The arguments shared by the comparison scripts: --phase, --resamples, --seed and LABEL=RUN_DIR runs."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--phase", type=int, required=True, choices=[1, 2, 3])
    ap.add_argument("--resamples", type=resample_count, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("runs", nargs="+", help="LABEL=RUN_DIR; the first is the reference of the paired differences")
    return ap.parse_args()


def ci(v):
    """95 % percentile interval of bootstrap values (NaN left out)."""
    v = sorted(x for x in v if x == x)
    return v[int(0.025 * (len(v) - 1))], v[int(0.975 * (len(v) - 1))]


def cell(full, boot):
    return "%.3f [%.3f, %.3f]" % ((full,) + ci(boot))


def paired(value, reference):
    """Paired difference of one metric, (full, [resampled]) against the reference's on the same resamples."""
    return "%+.3f [%+.3f, %+.3f]" % ((value[0] - reference[0],) + ci([b - r for b, r in zip(value[1], reference[1])]))


def main():
    a = arguments()
    test = os.path.join(ROOT, f"data/devtest/dev_{ROMAN[a.phase]}_test.csv")
    labels = read_labels(test)
    if len(set(labels.values())) < 2:
        raise BadInput(f"{test}: expected trials of both classes; ROC-AUC and PR-AUC need them")
    runs = []
    for label, run in run_specs(a.runs):
        pred = os.path.join(run, f"phase{a.phase}", "devtest_predictions.csv")
        best = os.path.join(run, f"phase{a.phase}", "best.json")
        # A run folder without this phase (Launch/devtest --phases) is left out of this phase's table, not the first.
        if runs and not os.path.isdir(os.path.join(run, f"phase{a.phase}")):
            print(f"devtest_compare: {run} has no phase {a.phase} run; left out", file=sys.stderr)
            continue
        p, t = read_probabilities(pred), read_threshold(best)
        if set(p) != set(labels):
            raise BadInput(f"{pred} does not score exactly the trials of {test} ({len(set(p) - set(labels))} others, "
                           f"{len(set(labels) - set(p))} missing)")
        runs.append((label, p, t))
    ids = sorted(labels)
    y = [labels[i] for i in ids]
    metrics = [("ROC-AUC", lambda s, y, t: roc_auc(s, y)), ("PR-AUC", lambda s, y, t: average_precision(s, y)),
               ("F1 (0.5)", lambda s, y, t: f1(s, y, 0.5)), ("F1 (thr)", f1)]
    rng = random.Random(a.seed)
    samples = [[rng.randrange(len(ids)) for _ in ids] for _ in range(a.resamples)]
    scores = [[p[i] for i in ids] for _, p, _ in runs]
    values = []   # values[run][metric] = (full, [resampled])
    for (label, _, t), s in zip(runs, scores):
        row = []
        for _, m in metrics:
            full = m(s, y, t)
            boot = [m([s[k] for k in idx], [y[k] for k in idx], t) for idx in samples]
            row.append((full, boot))
        values.append(row)

    pos = sum(y) / len(y)
    print(f"phase {a.phase}: {os.path.relpath(test, ROOT)}, {len(y)} trials ({sum(y)} successful; all-success F1 {2 * pos / (1 + pos):.3f}, "
          f"all-success PR-AUC {pos:.3f}); 95 % bootstrap intervals over {a.resamples} resamples; "
          f"Δ = paired difference to '{runs[0][0]}'")
    print("| run | thr | " + " | ".join(n for n, _ in metrics) + " | " + " | ".join("Δ " + metrics[m][0] for m in DELTAS) + " |")
    print("|---|---|" + "---|" * (len(metrics) + len(DELTAS)))
    for (label, _, t), row in zip(runs, values):
        cells = [cell(full, boot) for full, boot in row]
        deltas = [paired(row[m], values[0][m]) for m in DELTAS]
        print(f"| {label} | {t:.3f} | " + " | ".join(cells) + " | " + " | ".join(deltas) + " |")


if __name__ == "__main__":
    run_main("devtest_compare", main)
