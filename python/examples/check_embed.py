#!/usr/bin/env python3
"""f_DM of `cladmop_torch` against `cladmop embed` on the same checkpoint and trials.

    cladmop embed --checkpoint runs/main --data data/top/phase_I_valid.csv --output /tmp/valid.safetensors
    python python/examples/check_embed.py runs/main data/features/top.store data/top/phase_I_valid.csv /tmp/valid.safetensors

Prints the number of trials and the worst row-relative difference |f_torch - f_cladmop| / |f_cladmop|; exits 1
when it exceeds --bound (default 1e-4) or the trials differ.
"""
import argparse
import sys

import torch
from safetensors import safe_open

from cladmop_torch import inputs_from_store, load_pretrained


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint"), p.add_argument("store"), p.add_argument("csv"), p.add_argument("embeddings")
    p.add_argument("--hierarchy", help="ICD-10 tree (default: the checkpoint's data.icd_hierarchy)")
    p.add_argument("--bound", type=float, default=1e-4)
    a = p.parse_args()
    model = load_pretrained(a.checkpoint)
    nctids, inputs = inputs_from_store(a.store, model, csv=a.csv, hierarchy=a.hierarchy)
    with torch.no_grad():
        f_dm = model(*inputs).double()
    with safe_open(a.embeddings, "pt") as f:
        ref, order = f.get_tensor("f_dm").double(), f.metadata()["nctids"].split(",")
    if order != nctids:
        sys.exit(f"the trials differ: {a.embeddings} has {len(order)}, the store's rows of {a.csv} are {len(nctids)}")
    worst = ((f_dm - ref).norm(dim=1) / ref.norm(dim=1)).max().item()
    print(f"{len(nctids)} trials; worst row-relative difference of f_DM {worst:.2e} (bound {a.bound:g})")
    sys.exit(0 if worst <= a.bound else 1)


if __name__ == "__main__":
    main()
