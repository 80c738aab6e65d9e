#!/usr/bin/env python3
"""Checks the TensorBoard event files of cladmop run folders (log.tensorboard) against their metrics.jsonl,
with TensorBoard's own readers (no TensorFlow, no torch): Launch/setup makes .venv-tests for it.

usage: compare_events.py RUN_DIR [RUN_DIR ...]

For each folder: every record of every events.out.tfevents.* file must pass TensorBoard's record reader
(length and data CRC32C checks), each file must start with file_version brain.Event:2, and the scalars that
EventAccumulator loads must be exactly those of metrics.jsonl under the tags below: the same tags, steps and
values (to one float32 rounding, in file order), nothing missing and nothing extra.
Exit status 0: all equal; 1: a difference or a corrupt record (named on stderr); 3: tensorboard not importable.
"""
import glob
import json
import math
import os
import struct
import sys

try:
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.compat.proto import event_pb2
    from tensorboard.compat.tensorflow_stub import errors
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import PyRecordReader_New
except ImportError as e:  # pragma: no cover
    print(f"compare_events: cannot import tensorboard ({e}); run Launch/setup", file=sys.stderr)
    sys.exit(3)

# metrics.jsonl record type -> (the key that is the step, {JSON key: TensorBoard tag}); the same table as the
# ScalarRecord conformances in Sources/Training/Records.swift.
TABLE = {
    "train": ("step", {"loss": "train/loss", "lr": "train/lr", "grad_norm": "train/grad_norm",
                       "samples_per_second": "train/samples_per_second", "epoch": "train/epoch"}),
    "eval": ("step", {"val_loss": "val/loss", "val_top1_c2dm": "val/top1_c2dm", "val_top5_c2dm": "val/top5_c2dm",
                      "val_top1_dm2c": "val/top1_dm2c", "val_top5_dm2c": "val/top5_dm2c", "chance_top1": "val/chance_top1",
                      "epoch": "val/epoch"}),
    "summary": ("step", {"peak_rss_mb": "summary/peak_rss_mb", "train_seconds": "summary/train_seconds",
                         "samples_per_second": "summary/samples_per_second", "best_val_loss": "summary/best_val_loss"}),
    "finetune": ("epoch", {"train_loss": "finetune/train_loss", "valid_pr_auc": "finetune/valid_pr_auc",
                           "valid_roc_auc": "finetune/valid_roc_auc", "valid_f1": "finetune/valid_f1",
                           "valid_f1_at_threshold": "finetune/valid_f1_at_threshold", "threshold": "finetune/threshold"}),
}


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def check_records(path):
    """Reads every record with TensorBoard's reader (it checks both CRCs); returns the number of records."""
    reader = PyRecordReader_New(path, 0, None, None)
    count = 0
    while True:
        try:
            reader.GetNext()
        except errors.OutOfRangeError:
            return count
        except errors.DataLossError as e:
            raise SystemExit(f"compare_events: {path}: record {count + 1}: {e.message if hasattr(e, 'message') else e}")
        event = event_pb2.Event.FromString(reader.record())
        if count == 0 and event.file_version != "brain.Event:2":
            raise SystemExit(f"compare_events: {path}: the first record is not file_version brain.Event:2 ({event})")
        count += 1


def compare(run):
    files = sorted(glob.glob(os.path.join(run, "events.out.tfevents.*")))
    if not files:
        return [f"{run}: no events.out.tfevents.* file"]
    records = sum(check_records(f) for f in files)
    expected = {}
    with open(os.path.join(run, "metrics.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if r.get("type") not in TABLE:
                continue
            step_key, tags = TABLE[r["type"]]
            for key, tag in tags.items():
                if r.get(key) is not None:
                    expected.setdefault(tag, []).append((int(r[step_key]), f32(float(r[key]))))
    acc = event_accumulator.EventAccumulator(run, size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    actual = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    problems = []
    for tag in sorted(set(expected) | set(actual)):
        want, got = expected.get(tag, []), actual.get(tag, [])
        if len(want) != len(got):
            problems.append(f"{run}: {tag}: {len(want)} value(s) in metrics.jsonl, {len(got)} in the event files")
            continue
        for (ws, wv), (gs, gv) in zip(want, got):
            if ws != gs or not math.isclose(wv, gv, rel_tol=2 ** -23, abs_tol=1e-38):
                problems.append(f"{run}: {tag}: metrics.jsonl has step {ws} value {wv!r}, the event files step {gs} value {gv!r}")
                break
    n = sum(len(v) for v in actual.values())
    print(f"{run}: {len(files)} event file(s), {records} record(s), {len(actual)} tag(s), {n} scalar(s)")
    return problems


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    problems = []
    for run in sys.argv[1:]:
        problems += compare(run)
    for p in problems:
        print("compare_events: " + p, file=sys.stderr)
    if not problems:
        print("compare_events: every scalar of metrics.jsonl is in the event files, with the same step and value")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
