#!/usr/bin/env python3
"""Writes Tests/Fixtures/golden_model.safetensors: the golden whole-model fixture of GoldenModelTests.

The reference is `DMBranch` of python/cladmop_torch (imported from there, not copied; the same module that
`cladmop_torch.load_pretrained` returns and benchmarks/train_torch.py times), built at a small
random configuration and run in float64 on a fixed batch of 5 trials (varied lengths, padding, trials without
SMILES or ICD codes as cladmop represents them), followed by the training step's loss: f_C = masked mean of the
fine-level sentence vectors, symmetric InfoNCE of the L2-normalised f_C and f_DM with logit scale exp(log_scale),
and its gradient with respect to every parameter (loss.log_scale included). Everything is stored as float32
under cladmop's names (docs/checkpoints.md); the weights are rounded to float32 before the float64 reference
runs, so cladmop and PyTorch compute from the same values.

    /work/torchvenv/bin/python Tests/Fixtures/make_golden.py

(any Python with torch and numpy; see Tests/Fixtures/README.md). Deterministic for a given torch
build: torch.manual_seed(20240611) drives every random number.
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "python"))
from cladmop_torch.model import DMBranch  # noqa: E402  (the one PyTorch reference of the model)
from cladmop_torch.names import tensor_map  # noqa: E402  (cladmop's tensor names)

OUTPUT = os.path.join(HERE, "golden_model.safetensors")

# cladmop's ModelConfig (Sources/Model/CLaDMoP.swift), JSON keys as its Codable encoding.
CONFIG = {
    "dim": 16, "heads": 2, "molLayers": 1, "disLayers": 1, "groupingLayers": 2, "selfLayers": 1, "centroids": 6,
    "encoderDim": 12, "molVocab": 11, "maxMolecules": 3, "icdTableSizes": [4, 6, 8], "categoryCount": 9,
    "learnableScale": True, "initialLogScale": 0.6,
}
LEVELS = ["coarse", "medium", "fine"]

# The batch, in cladmop's terms (what BatchBuilder.batch makes): per trial its molecule tokens
# (token id, molecule position), its codes (ancestor row per depth, -1 = none; category row) and its
# number of criterion sentences. SMILES ids: 0 PAD, 1 UNK, 2 <none>; the "no code" category is the last row.
NONE_TOKEN = 2
NO_CODE = [-1, -1, -1, CONFIG["categoryCount"] - 1]
TRIALS = [
    # 5 tokens in 3 molecules (one UNK), 3 codes of depths 3, 3 and 2, 4 sentences
    dict(mol=[(3, 0), (7, 0), (1, 1), (10, 1), (5, 2)], codes=[[0, 1, 2, 3], [3, 5, 7, 7], [1, 4, -1, 0]], sentences=4),
    # no ICD code, 2 tokens, 1 sentence
    dict(mol=[(4, 0), (9, 0)], codes=[NO_CODE], sentences=1),
    # no SMILES and no ICD code, 3 sentences
    dict(mol=[(NONE_TOKEN, 0)], codes=[NO_CODE], sentences=3),
    # 3 tokens in 2 molecules, 2 codes (one of depth 1), 2 sentences
    dict(mol=[(6, 0), (8, 1), (6, 1)], codes=[[2, 0, 5, 2], [3, -1, -1, 4]], sentences=2),
    # no SMILES, 1 code, the full 4 sentences
    dict(mol=[(NONE_TOKEN, 0)], codes=[[1, 2, 1, 6]], sentences=4),
]


def save_safetensors(path, tensors, metadata):
    """The safetensors format with the header's keys sorted and the tensors in name order, so that the same
    values always give the same bytes (safetensors' own writer orders the metadata at random)."""
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name], dtype="<f4")
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        blobs.append(a.tobytes())
        offset += a.nbytes
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-(8 + len(text)) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def make_batch(gen):
    """cladmop ModelBatch arrays (padding: molecule id 0, code rows -1, criteria garbage) and the torch inputs."""
    c = CONFIG
    n, e, depth = len(TRIALS), c["encoderDim"], len(c["icdTableSizes"])
    lm = max(len(t["mol"]) for t in TRIALS)
    lc = max(len(t["codes"]) for t in TRIALS)
    ls = max(t["sentences"] for t in TRIALS)
    w = depth + 1
    mol_ids = np.zeros((n, lm, 2), np.int64)
    mol_mask = np.zeros((n, lm), np.uint8)
    code_ids = np.full((n, lc, w), -1, np.int64)
    code_mask = np.zeros((n, lc), np.uint8)
    sentence_mask = np.zeros((n, ls), np.uint8)
    for i, t in enumerate(TRIALS):
        for j, (tok, pos) in enumerate(t["mol"]):
            mol_ids[i, j] = (tok, pos)
            mol_mask[i, j] = 1
        for j, rows in enumerate(t["codes"]):
            code_ids[i, j] = rows
            code_mask[i, j] = 1
        sentence_mask[i, :t["sentences"]] = 1
    # Sentence vectors (3, n, Ls, E); padded sentences hold large garbage that must never be read.
    criteria = torch.randn(3, n, ls, e, generator=gen, dtype=torch.float64).float().double()
    pad = torch.from_numpy(sentence_mask == 0)[None, :, :, None].expand_as(criteria)
    criteria = torch.where(pad, torch.full_like(criteria, 7.0), criteria)
    cladmop = {
        "input.mol_ids": mol_ids, "input.mol_mask": mol_mask, "input.code_ids": code_ids, "input.code_mask": code_mask,
        "input.criteria": criteria.numpy(), "input.sentence_mask": sentence_mask,
    }
    # torch's DMBranch: ICD ancestor tables have row 0 = "no ancestor", so cladmop's row r is torch's r + 1
    # (-1 -> 0); category rows are the same. Padding positions are masked out (any valid index will do).
    tcode = torch.from_numpy(code_ids).clone()
    tcode[..., :depth] += 1
    tcode[..., depth] = tcode[..., depth].clamp(min=0)
    torch_inputs = (torch.from_numpy(mol_ids[..., 0]), torch.from_numpy(mol_ids[..., 1]), torch.from_numpy(mol_mask).bool(),
                    tcode, torch.from_numpy(code_mask).bool(), criteria, torch.from_numpy(sentence_mask).bool())
    return cladmop, torch_inputs


def cladmop_tensors(model, log_scale, get):
    """Every parameter of `model` (and the loss's log scale) under cladmop's name, in cladmop's layout
    (cladmop_torch.names.tensor_map). `get(p)` is p itself or its gradient."""
    out = {name: get(param)[index] for name, (param, index) in tensor_map(model).items()}
    out["loss.log_scale"] = get(log_scale).reshape(1)
    return out


def main():
    torch.manual_seed(20240611)
    gen = torch.Generator().manual_seed(20240611)
    c = CONFIG
    model = DMBranch(c["dim"], c["heads"], c["molLayers"], c["disLayers"], c["groupingLayers"], c["selfLayers"],
                                 c["centroids"], c["encoderDim"], len(c["icdTableSizes"]), mol_vocab=c["molVocab"],
                                 max_molecules=c["maxMolecules"], icd_sizes=c["icdTableSizes"]).double()
    assert model.category.weight.shape[0] == c["categoryCount"]
    # Away from the default initialisation, so that every path matters: LayerNorm gains around 1, nonzero biases
    # (nn.MultiheadAttention starts them at 0), source-type embeddings of the size of the other inputs and small
    # centroids.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
            elif ".ln_" in name or name.startswith("norm."):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
            elif name.startswith("source_type"):
                p.copy_(0.5 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
            elif name.startswith("centroids"):
                p.mul_(0.1)              # N(0, 1) centroids would dominate A and make f_DM nearly the same for every trial
        for t in model.icd:
            t.weight[0].zero_()          # "no ancestor" contributes nothing (cladmop: id -1 is skipped)
        for p in model.parameters():     # the reference computes from the float32 values the fixture stores
            p.copy_(p.float().double())
    log_scale = torch.tensor(np.float32(c["initialLogScale"]), dtype=torch.float64, requires_grad=True)

    cl_inputs, inputs = make_batch(gen)
    model.train()
    f_dm = model(*inputs)
    crit, mask = inputs[5][2], inputs[6].unsqueeze(-1).double()
    f_c = (crit * mask).sum(1) / mask.sum(1)
    a, b = F.normalize(f_c, dim=-1), F.normalize(f_dm, dim=-1)
    logits = log_scale.exp() * a @ b.t()
    labels = torch.arange(len(TRIALS))
    loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2
    loss.backward()

    values = cladmop_tensors(model, log_scale, lambda p: p.detach())
    grads = cladmop_tensors(model, log_scale, lambda p: p.grad)
    # Every torch parameter is exported (the ICD tables' row 0 apart): the counts must add up.
    exported = sum(v.numel() for v in values.values())
    expected = sum(p.numel() for p in model.parameters()) - len(model.icd) * c["dim"] + 1
    assert exported == expected, (exported, expected)
    for t in model.icd:
        assert float(t.weight.grad[0].abs().max()) == 0.0

    tensors = {}
    for k, v in cl_inputs.items():
        tensors[k] = np.ascontiguousarray(v, dtype=np.float32)
    for k, v in values.items():
        tensors["param." + k] = v.float().contiguous().numpy()
    for k, v in grads.items():
        tensors["grad." + k] = v.float().contiguous().numpy()
    tensors["output.f_dm"] = f_dm.detach().float().numpy()
    tensors["output.f_c"] = f_c.detach().float().numpy()
    tensors["output.loss"] = loss.detach().float().reshape(1).numpy()
    metadata = {"model_config": json.dumps(CONFIG, sort_keys=True),
                "generator": "Tests/Fixtures/make_golden.py (python/cladmop_torch DMBranch, float64)",
                "torch": torch.__version__}
    save_safetensors(OUTPUT, tensors, metadata)
    print(f"wrote {OUTPUT}: {len(values)} parameters ({exported} values), {os.path.getsize(OUTPUT)} bytes, "
          f"loss {loss.item():.9f}")


if __name__ == "__main__":
    main()
