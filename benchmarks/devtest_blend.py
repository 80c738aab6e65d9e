#!/usr/bin/env python3
"""Lever check (docs/outcome.md, round 7): does a logistic regression on simple features, blended with the fine-tuned
ensemble's scores, rank the development test better than the ensemble alone?

  python3 benchmarks/devtest_blend.py --phase N RUN      (after `Launch/devtest --run-dir RUN`; needs numpy, scipy and
                                                          scikit-learn: pip install numpy scipy scikit-learn)

Features per trial, as `cladmop baseline` takes them: the mean fine-level criterion vector of the first 96 sentences
(read from data/features/top.store), a bag of ICD-10 categories (first three characters) and a bag of SMILES tokens
(vocabularies from the training trials, counts normalised per trial), plus the counts of sentences, drugs and codes;
standardised with the training statistics; class-balanced L2 logistic regression. It trains on what the phase's
members train on together (the pooled train + selection files and the auxiliary trials, as Launch/devtest builds
them); its C is chosen by 5-fold cross-validated ROC-AUC on the pooled trials (auxiliary trials always in training),
never on the dev test. The blend is a rank average, weight w on the regression (0.25 and 0.5, fixed in advance).
Prints ROC-AUC and PR-AUC on the dev test for the ensemble (RUN/phaseN/devtest_predictions.csv), the regression and
the blends, with 95 % bootstrap intervals of the blend's paired difference to the ensemble.
"""
import argparse, csv, json, struct, sys
try:
    import numpy as np
    from scipy.stats import rankdata
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score, roc_auc_score
    from sklearn.model_selection import StratifiedKFold
except ImportError as e:
    print(f"devtest_blend.py: {e}; it needs numpy, scipy and scikit-learn: pip install numpy scipy scikit-learn", file=sys.stderr)
    sys.exit(2)

ap = argparse.ArgumentParser()
ap.add_argument("--phase", type=int, choices=[1, 2, 3], required=True)
ap.add_argument("run")
ap.add_argument("--store", default="data/features/top.store")
ap.add_argument("--grid", default="0.0001,0.0003,0.001,0.003,0.01", help="the regression's C values, chosen among by cross-validation")
a = ap.parse_args()

H = struct.Struct("<8sIIQQQQQ")
raw = open(a.store, "rb").read()
magic, version, levels, dim, count, meta_bytes, offset, _ = H.unpack_from(raw, 0)
if magic != b"CLADMOPF" or version != 1 or levels != 3:
    raise SystemExit(f"{a.store}: not a version-1 cladmop feature store")
try:
    meta = json.loads(raw[H.size:H.size + meta_bytes])
except (ValueError, RecursionError) as e:   # RecursionError: nested past Python's limit
    raise SystemExit(f"{a.store}: the feature store's metadata is not JSON ({e})")
V = np.frombuffer(raw, np.float32, count=count * 3 * dim, offset=offset).reshape(count, 3, dim)
by_id = {}
for t in meta["trials"]:
    by_id.setdefault(t["nctid"], t)


def rows(path):
    with open(path, newline="") as f:
        return [(r["nctid"], int(r["label"])) for r in csv.DictReader(f)]


def vocab(trials):
    cats, toks = {}, {}
    for t in trials:
        for c in (c for d in t["icd"] for c in d):
            cats.setdefault(c[:3], len(cats))
        for m in t["smiles"]:
            for k in m:
                toks.setdefault(k, len(toks))
    return cats, toks


def features(trials, cats, toks):
    X = np.zeros((len(trials), dim + len(cats) + len(toks) + 3), np.float32)
    for i, t in enumerate(trials):
        s = t["sentences"][:96]
        if s:
            X[i, :dim] = V[s, 2].mean(0)
        codes = [c for d in t["icd"] for c in d]
        for c in codes:
            if c[:3] in cats:
                X[i, dim + cats[c[:3]]] += 1 / len(codes)
        o = dim + len(cats)
        tokens = [k for m in t["smiles"] for k in m]
        for k in tokens:
            if k in toks:
                X[i, o + toks[k]] += 1 / len(tokens)
        o += len(toks)
        X[i, o:o + 3] = len(t["sentences"]) / 50, len(t["smiles"]), len(codes)
    return X


def fit_predict(train, test, C):
    cats, toks = vocab([by_id[n] for n, _ in train])
    Xtr = features([by_id[n] for n, _ in train], cats, toks)
    Xte = features([by_id[n] for n, _ in test], cats, toks)
    mu, sd = Xtr.mean(0), Xtr.std(0) + 1e-6
    m = LogisticRegression(C=C, class_weight="balanced", max_iter=3000).fit((Xtr - mu) / sd, [y for _, y in train])
    return m.predict_proba((Xte - mu) / sd)[:, 1]


d, R = "data/devtest", {1: "I", 2: "II", 3: "III"}[a.phase]
pool = rows(f"{d}/dev_I_train.csv") + rows("data/top/phase_I_valid.csv") if a.phase == 1 else \
    rows(f"{d}/dev_{R}_train.csv") + rows(f"{d}/dev_{R}_select.csv")
aux, test = rows(f"{d}/dev_{R}_aux.csv"), rows(f"{d}/dev_{R}_test.csv")
y = np.array([l for _, l in test])

# C by cross-validated ROC-AUC on the pooled trials (the dev test chooses nothing).
folds = StratifiedKFold(5, shuffle=True, random_state=1)
pool_y = np.array([l for _, l in pool])
cv = {}
for C in [float(c) for c in a.grid.split(",")]:
    oof = np.zeros(len(pool))
    for tr, va in folds.split(np.zeros(len(pool)), pool_y):
        oof[va] = fit_predict([pool[i] for i in tr] + aux, [pool[i] for i in va], C)
    cv[C] = roc_auc_score(pool_y, oof)
C = max(cv, key=cv.get)
p_lr = fit_predict(pool + aux, test, C)
with open(f"{a.run}/phase{a.phase}/devtest_predictions.csv", newline="") as f:
    nn = {r["nctid"]: float(r["probability"]) for r in csv.DictReader(f)}
p_nn = np.array([nn[n] for n, _ in test])
rank = lambda p: rankdata(p) / len(p)
rng = np.random.default_rng(1)
boot = [rng.integers(0, len(y), len(y)) for _ in range(2000)]
boot = [b for b in boot if 0 < y[b].sum() < len(b)]
print(f"phase {a.phase}: dev test {len(y)} trials; C = {C} (5-fold ROC-AUC on the pool: " +
      ", ".join(f"{c}: {v:.3f}" for c, v in cv.items()) + ")")
print("| scores | ROC-AUC | PR-AUC | ROC-AUC - ensemble [95 %] |\n|---|---|---|---|")
for name, p in [("ensemble", p_nn), ("logistic regression", p_lr),
                ("blend w 0.25", 0.75 * rank(p_nn) + 0.25 * rank(p_lr)), ("blend w 0.5", 0.5 * rank(p_nn) + 0.5 * rank(p_lr)),
                ("probability mean w 0.5", 0.5 * p_nn + 0.5 * p_lr)]:
    diff = [roc_auc_score(y[b], p[b]) - roc_auc_score(y[b], p_nn[b]) for b in boot]
    lo, hi = np.percentile(diff, [2.5, 97.5])
    print(f"| {name} | {roc_auc_score(y, p):.3f} | {average_precision_score(y, p):.3f} | "
          f"{roc_auc_score(y, p) - roc_auc_score(y, p_nn):+.3f} [{lo:+.3f}, {hi:+.3f}] |")
