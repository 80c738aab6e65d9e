#!/usr/bin/env python3
"""Writes Tests/Fixtures/torch_loader/f_dm_torch.safetensors: f_DM of the committed small cladmop checkpoint
(torch_loader/run) on the trials of torch_loader/valid.csv, computed by the `cladmop_torch` package
(python/ of this repository): load_pretrained + inputs_from_store, in float64. TorchLoaderFixtureTests runs
`cladmop embed` on the same checkpoint and trials in CI and compares (row-relative difference <= 1e-4), so the
package and cladmop are checked against each other without torch in CI.

    /work/torchvenv/bin/pip install ./python          # any Python with torch; see Tests/Fixtures/README.md
    /work/torchvenv/bin/python Tests/Fixtures/make_torch_loader.py
"""
import os
import sys

import torch
from safetensors.torch import save_file

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
try:
    import cladmop_torch
except ImportError:                       # not pip-installed: the package's source in this repository
    sys.path.insert(0, os.path.join(ROOT, "python"))
    import cladmop_torch

HERE = os.path.join(ROOT, "Tests", "Fixtures", "torch_loader")


def main():
    model = cladmop_torch.load_pretrained(os.path.join(HERE, "run"), dtype=torch.float64)
    nctids, inputs = cladmop_torch.inputs_from_store(os.path.join(HERE, "valid.store"), model,
                                                     csv=os.path.join(HERE, "valid.csv"),
                                                     hierarchy=os.path.join(ROOT, "data", "icd10", "icd10cm_2025_hierarchy.tsv"),
                                                     dtype=torch.float64)
    with torch.no_grad():
        f_dm, pooled = model(*inputs, return_pooled=True)
    out = os.path.join(HERE, "f_dm_torch.safetensors")
    save_file({"f_dm": f_dm.float().contiguous(), "pooled": pooled.float().contiguous()}, out,
              metadata={"nctids": ",".join(nctids), "torch": torch.__version__, "cladmop_torch": cladmop_torch.__version__,
                        "generator": "Tests/Fixtures/make_torch_loader.py (float64)"})
    print(f"wrote {out}: f_dm {tuple(f_dm.shape)} for {len(nctids)} trials (torch {torch.__version__})")


if __name__ == "__main__":
    main()
