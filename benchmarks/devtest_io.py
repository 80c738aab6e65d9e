"""Strict readers shared by the development-test scripts (devtest_compare, devtest_oof, devtest_calibration,
devtest_threshold): a damaged input ends the script with exit status 2 and a message naming the file, the line and
what was expected, never a traceback and never figures computed from it (a NaN probability had moved PR-AUC by 0.16,
a trial listed twice its ROC-AUC, with exit 0). CSVs may start with a UTF-8 byte-order mark and end lines with CR LF."""
import csv, json, os, subprocess, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLADMOP = os.path.join(ROOT, ".build/release/cladmop")


class BadInput(Exception):
    """A file (or argument) that is not what the script expects; the message names it."""


def run_main(script, main):
    """Runs `main()`; a BadInput ends the script with its message and exit status 2."""
    try:
        main()
    except BadInput as e:
        print(f"{script}: {e}", file=sys.stderr)
        sys.exit(2)


def _rows(path, columns):
    """(line number, row) of a CSV with the named columns."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            missing = [c for c in columns if c not in header]
            if missing:
                raise BadInput(f"{path}: expected the column(s) {', '.join(columns)}; its header is {','.join(header) or '(empty)'}")
            rows = [(reader.line_num, row) for row in reader]
    except OSError as e:
        raise BadInput(f"{path}: cannot read: {e.strerror or e}")
    except UnicodeDecodeError:
        raise BadInput(f"{path}: not UTF-8 text")
    except csv.Error as e:
        raise BadInput(f"{path}: not a CSV file ({e})")
    return rows


def read_probabilities(path):
    """nctid -> probability of a predictions CSV (nctid,probability; `cladmop predict`'s output): each trial once,
    each probability a number in [0, 1] (NaN and infinities are refused)."""
    out = {}
    for line, row in _rows(path, ("nctid", "probability")):
        nctid = (row.get("nctid") or "").strip()
        if not nctid:
            raise BadInput(f"{path}:{line}: empty nctid")
        if nctid in out:
            raise BadInput(f"{path}:{line}: {nctid} is listed twice")
        text = (row.get("probability") or "").strip()
        try:
            p = float(text)
        except ValueError:
            raise BadInput(f"{path}:{line}: probability of {nctid} is {text!r}; expected a number in [0, 1]")
        if not 0 <= p <= 1:
            raise BadInput(f"{path}:{line}: probability of {nctid} is {text}; expected a number in [0, 1]")
        out[nctid] = p
    return out


def read_labels(path, repeats=False):
    """nctid -> label (0 or 1) of a TOP CSV, or (`repeats`) of a run's folds.csv, which lists every trial once per
    partition of repeated cross-fitting: each trial as many times as the others, its rows agreeing on the label."""
    out, count = {}, {}
    for line, row in _rows(path, ("nctid", "label")):
        nctid = (row.get("nctid") or "").strip()
        if not nctid:
            raise BadInput(f"{path}:{line}: empty nctid")
        label = (row.get("label") or "").strip()
        if label not in ("0", "1"):
            raise BadInput(f"{path}:{line}: label of {nctid} is {label!r}; expected 0 or 1")
        if nctid in out and (not repeats or out[nctid] != int(label)):
            raise BadInput(f"{path}:{line}: {nctid} is listed twice" if not repeats
                           else f"{path}:{line}: {nctid} has label {label} here and {out[nctid]} on an earlier row")
        out[nctid] = int(label)
        count[nctid] = count.get(nctid, 0) + 1
    if repeats and len(set(count.values())) > 1:
        odd = min(count, key=lambda i: (count[i] == max(count.values()), i))
        raise BadInput(f"{path}: {odd} is listed {count[odd]} time(s), other trials {max(count.values())}: expected every trial "
                       "once per partition of the cross-fitting")
    return out


def read_folds(path):
    """nctid -> [(fold, label)] of a run's folds.csv (one entry per partition), folds numbered from 1."""
    labels = read_labels(path, repeats=True)
    if not labels:
        raise BadInput(f"{path}: no trials; expected the folds.csv of a cross-fitted run")
    out = {}
    for line, row in _rows(path, ("nctid", "fold", "label")):
        fold = (row.get("fold") or "").strip()
        if not fold.isdigit() or int(fold) < 1:
            raise BadInput(f"{path}:{line}: fold {fold!r}; expected a fold number from 1")
        out.setdefault(row["nctid"].strip(), []).append((int(fold), labels[row["nctid"].strip()]))
    return out


def read_threshold(best):
    """The decision threshold of a run's best.json: a number in [0, 1]."""
    try:
        with open(best, encoding="utf-8") as fh:
            value = json.load(fh)
    except OSError as e:
        raise BadInput(f"{best}: cannot read: {e.strerror or e}")
    except (ValueError, UnicodeDecodeError, RecursionError) as e:   # RecursionError: nested past Python's limit
        raise BadInput(f"{best}: not valid JSON ({e})")
    t = value.get("threshold") if isinstance(value, dict) else None
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t <= 1:
        raise BadInput(f"{best}: expected a JSON object whose \"threshold\" is a number in [0, 1], got {json.dumps(t)}")
    return float(t)


def run_specs(specs):
    """LABEL=RUN_DIR arguments -> [(label, absolute run folder)]; a folder that does not exist is refused."""
    out = []
    for spec in specs:
        label, sep, run = spec.partition("=")
        if not sep or not label or not run:
            raise BadInput(f"{spec}: expected LABEL=RUN_DIR")
        if not os.path.isdir(run):
            raise BadInput(f"{spec}: {run} is not a folder (a run folder of Launch/devtest --run-dir)")
        out.append((label, os.path.abspath(run)))
    return out


def predict(checkpoint, data, out, phase, extra=()):
    """`cladmop predict` of `data` (relative to the repository) with `checkpoint` into `out`, read back. The run's own
    configuration (its encoder.model_dir and data.feature_store: a run on another encoder is scored with that encoder's
    vectors), else the phase's config. A failure ends the script with cladmop's own message."""
    checkpoint = os.path.abspath(checkpoint)
    config, folder = None, checkpoint
    for _ in range(3):      # RUN, or RUN/members/k: the first config.yaml up from the checkpoint
        if os.path.isfile(os.path.join(folder, "config.yaml")):
            config = os.path.join(folder, "config.yaml")
            break
        folder = os.path.dirname(folder)
    config = config or f"configs/finetune-phase{phase}.yaml"
    try:
        r = subprocess.run([CLADMOP, "predict", "--config", config, "--checkpoint", checkpoint, *extra, "--data", data, "--output", out],
                           cwd=ROOT, capture_output=True, text=True)
    except OSError as e:
        raise BadInput(f"{CLADMOP}: cannot run ({e.strerror or e}); build it with Launch/setup")
    if r.returncode != 0:
        said = (r.stderr.strip() or r.stdout.strip()).splitlines()
        raise BadInput(f"cladmop predict --checkpoint {checkpoint} --data {data} failed (exit {r.returncode}): "
                       + (said[-1] if said else "no message"))
    return read_probabilities(out)
