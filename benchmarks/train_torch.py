#!/usr/bin/env python3
"""PyTorch reference of cladmop's training step at the SPEC 8 shape (docs/performance.md).

The same DM branch as Sources/Model/CLaDMoP.swift (pre-LN transformer layers, molecule and disease
enrichment, per-level projections, grouping blocks with learnable centroids and source-type embeddings,
final LayerNorm + projection), the same synthetic batches as `cladmop bench` (molecule tokens in [32, 128],
codes in [2, 16], sentences in [4, 32] per level with --variable, else every row at the maximum; padded to
the batch maximum), f_C = masked mean of the fine-level sentence vectors, and the same distributed step:
each process embeds its rows, all-gathers f_C and f_DM (gloo), computes the symmetric InfoNCE over the
global batch with the local rows keeping their autograd graph, backpropagates W x the loss (so that DDP's
gradient average is the gradient of the global loss), and DDP all-reduces the gradients in buckets while
backward runs. Adam. One thread per process.

    python3 benchmarks/train_torch.py --processes 2 [--variable] [--attention mha|sdpa] [--global-batch 128] [--steps 6]

Prints one JSON object: samples_per_second, ms_per_step, world_size, global_batch, peak_rss_mb (largest
over processes), parameters. Needs torch (pip install torch); not used by the product or its tests.
"""
import argparse
import json
import os
import resource
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F

ICD_SIZES = [22, 284, 1917, 10262, 17924, 27407, 40074]
ATTENTION = "mha"   # set from --attention before the model is built


class SDPAttention(nn.Module):
    """Multi-head attention on F.scaled_dot_product_attention (the same parameters as nn.MultiheadAttention)."""

    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))

    def forward(self, x, kv, ignore):
        n, lq, d = x.shape
        split = lambda t: t.view(n, -1, self.heads, d // self.heads).transpose(1, 2)
        mask = None if ignore is None else ~ignore[:, None, None, :]
        a = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(kv)), split(self.v(kv)), attn_mask=mask)
        return self.o(a.transpose(1, 2).reshape(n, lq, d))


class Layer(nn.Module):
    """Pre-LN layer: x = x + MHA(LN_q(x), LN_kv(kv)); x = x + FFN(LN_ffn(x)) (self-attention when kv is None)."""

    def __init__(self, d, heads, cross=False):
        super().__init__()
        self.ln_q = nn.LayerNorm(d)
        self.ln_kv = nn.LayerNorm(d) if cross else None
        self.sdpa = ATTENTION == "sdpa"
        self.attn = SDPAttention(d, heads) if self.sdpa else nn.MultiheadAttention(d, heads, batch_first=True)
        self.ln_ffn = nn.LayerNorm(d)
        self.ffn = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x, kv=None, ignore=None):
        q = self.ln_q(x)
        k = self.ln_kv(kv) if self.ln_kv is not None else q
        if self.sdpa:
            a = self.attn(q, k, ignore)
        else:
            a, _ = self.attn(q, k, k, key_padding_mask=ignore, need_weights=False)
        x = x + a
        return x + self.ffn(self.ln_ffn(x))


class DMBranch(nn.Module):
    def __init__(self, d, heads, mol_layers, dis_layers, groups, selfs, centroids, encoder_dim, icd_depth,
                 mol_vocab=100, max_molecules=8, icd_sizes=None):
        super().__init__()
        # icd_sizes: rows per ICD depth (default the ICD-10-CM tree's, ICD_SIZES); Tests/Fixtures/make_golden.py
        # passes small ones.
        sizes = list(icd_sizes or ICD_SIZES)[:icd_depth]
        self.mol_token = nn.Embedding(mol_vocab, d)
        self.mol_position = nn.Embedding(max_molecules, d)
        self.mol = nn.ModuleList(Layer(d, heads) for _ in range(mol_layers))
        # Row 0 of each table is "no ancestor at this depth" (zero, like cladmop's -1).
        self.icd = nn.ModuleList(nn.Embedding(n + 1, d, padding_idx=0) for n in sizes)
        self.category = nn.Embedding(sizes[2] + 1 if len(sizes) >= 3 else 2, d)
        self.dis = nn.ModuleList(Layer(d, heads) for _ in range(dis_layers))
        self.proj = nn.ModuleList(nn.Linear(encoder_dim, d) for _ in range(3))
        self.source_type = nn.ParameterList(nn.Parameter(0.02 * torch.randn(4, d)) for _ in range(3))
        self.centroids = nn.ParameterList(nn.Parameter(torch.randn(max(centroids >> g, 1), d))
                                          for _ in range(3) for g in range(groups))
        self.cross = nn.ModuleList(Layer(d, heads, cross=True) for _ in range(3 * groups))
        self.selfs = nn.ModuleList(nn.ModuleList(Layer(d, heads) for _ in range(selfs)) for _ in range(3 * groups))
        self.groups = groups
        self.norm = nn.LayerNorm(d)
        self.out = nn.Linear(d, encoder_dim)

    def forward(self, mol_ids, mol_pos, mol_mask, code_ids, code_mask, criteria, sentence_mask):
        n = mol_ids.shape[0]
        xm = self.mol_token(mol_ids) + self.mol_position(mol_pos)
        for layer in self.mol:
            xm = layer(xm, ignore=~mol_mask)
        xd = sum(t(code_ids[..., k]) for k, t in enumerate(self.icd)) + self.category(code_ids[..., -1])
        for layer in self.dis:
            xd = layer(xd, ignore=~code_mask)
        previous = None
        for x in range(3):
            t = self.source_type[x]
            parts = [xm + t[0], xd + t[1], self.proj[x](criteria[x]) + t[2]]
            masks = [mol_mask, code_mask, sentence_mask]
            if previous is not None:
                parts.append(previous + t[3])
                masks.append(torch.ones(previous.shape[:2], dtype=torch.bool))
            kv, ignore = torch.cat(parts, 1), ~torch.cat(masks, 1)
            for g in range(self.groups):
                i = x * self.groups + g
                y = self.cross[i](self.centroids[i].expand(n, -1, -1), kv, ignore if g == 0 else None)
                for layer in self.selfs[i]:
                    y = layer(y)
                kv = y
            previous = y
        return self.out(self.norm(previous).mean(1))


def make_batch(n, args, generator):
    """A local batch like cladmop bench's: per-row lengths, padded to the batch maximum."""
    def length(lo, hi):
        return int(torch.randint(lo, hi + 1, (1,), generator=generator)) if args.variable else hi
    rows = [(length(args.mol_tokens // 4, args.mol_tokens), length(min(2, args.codes), args.codes),
             length(max(args.sentences // 8, 1), args.sentences)) for _ in range(n)]
    lm, lc, ls = (max(r[k] for r in rows) for k in range(3))
    w = args.icd_depth + 1
    mol_ids = torch.zeros(n, lm, dtype=torch.long)
    mol_pos = torch.zeros(n, lm, dtype=torch.long)
    mol_mask = torch.zeros(n, lm, dtype=torch.bool)
    code_ids = torch.zeros(n, lc, w, dtype=torch.long)
    code_mask = torch.zeros(n, lc, dtype=torch.bool)
    sentence_mask = torch.zeros(n, ls, dtype=torch.bool)
    for i, (m, k, s) in enumerate(rows):
        mol_ids[i, :m] = torch.randint(3, 100, (m,), generator=generator)
        mol_pos[i, :m] = torch.arange(m) * 8 // m
        mol_mask[i, :m] = True
        for t, size in enumerate(ICD_SIZES[:args.icd_depth]):
            code_ids[i, :k, t] = 1 + torch.randint(0, size, (k,), generator=generator)
        code_ids[i, :k, w - 1] = torch.randint(0, ICD_SIZES[2], (k,), generator=generator)
        code_mask[i, :k] = True
        sentence_mask[i, :s] = True
    criteria = 0.1 * torch.randn(3, n, ls, args.encoder_dim, generator=generator)
    return mol_ids, mol_pos, mol_mask, code_ids, code_mask, criteria, sentence_mask


def gather_rows(t, rank, world):
    """All-gather rows; the local slice keeps its graph, so the local rows get the global loss's gradient."""
    parts = [torch.empty_like(t) for _ in range(world)]
    dist.all_gather(parts, t.detach().contiguous())
    parts[rank] = t
    return torch.cat(parts)


def worker(rank, world, args, port, out):
    global ATTENTION
    ATTENTION = args.attention
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    if hasattr(os, "sched_setaffinity") and world <= os.cpu_count():
        os.sched_setaffinity(0, {rank})
    torch.manual_seed(1)
    model = DMBranch(args.dim, args.heads, args.mol_layers, args.dis_layers, args.groups, args.selfs, args.centroids,
                     args.encoder_dim, args.icd_depth)
    parameters = sum(p.numel() for p in model.parameters())
    ddp = nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.Adam(ddp.parameters(), lr=1e-4)
    local = args.global_batch * (rank + 1) // world - args.global_batch * rank // world
    generator = torch.Generator().manual_seed(7 + rank)
    scale = torch.tensor(0.6).exp()
    times = []
    for step in range(args.warmup + args.steps):
        batch = make_batch(local, args, generator)
        dist.barrier()
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        f_dm = ddp(*batch)
        crit, mask = batch[5][2], batch[6].unsqueeze(-1).float()
        f_c = (crit * mask).sum(1) / mask.sum(1)
        a = F.normalize(gather_rows(f_c, rank, world), dim=-1)
        b = F.normalize(gather_rows(f_dm, rank, world), dim=-1)
        logits = scale * a @ b.t()
        labels = torch.arange(args.global_batch)
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2
        (loss * world).backward()
        optimizer.step()
        if step >= args.warmup:
            times.append(time.perf_counter() - t0)
    step_seconds = torch.tensor([max(sum(times) / len(times), 0)])
    dist.all_reduce(step_seconds, op=dist.ReduceOp.MAX)
    rss = torch.tensor([resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0])
    dist.all_reduce(rss, op=dist.ReduceOp.MAX)
    if rank == 0:
        out.put({"implementation": f"pytorch {torch.__version__} eager, gloo DDP, attention {args.attention}", "world_size": world,
                 "global_batch": args.global_batch, "variable_lengths": args.variable, "steps": args.steps,
                 "ms_per_step": 1000 * float(step_seconds), "samples_per_second": args.global_batch / float(step_seconds),
                 "peak_rss_mb": float(rss), "parameters": parameters})
    dist.destroy_process_group()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--variable", action="store_true", help="lengths vary per row (configs/bench.yaml); default: full lengths")
    p.add_argument("--attention", choices=["mha", "sdpa"], default="mha",
                   help="nn.MultiheadAttention (default) or F.scaled_dot_product_attention")
    p.add_argument("--global-batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--mol-layers", type=int, default=4)
    p.add_argument("--dis-layers", type=int, default=4)
    p.add_argument("--groups", type=int, default=3)
    p.add_argument("--selfs", type=int, default=2)
    p.add_argument("--centroids", type=int, default=100)
    p.add_argument("--icd-depth", type=int, default=5)
    p.add_argument("--encoder-dim", type=int, default=384)
    p.add_argument("--mol-tokens", type=int, default=128)
    p.add_argument("--codes", type=int, default=16)
    p.add_argument("--sentences", type=int, default=32)
    args = p.parse_args()
    ctx = mp.get_context("spawn")
    out = ctx.SimpleQueue()
    port = 29500 + os.getpid() % 1000
    procs = [ctx.Process(target=worker, args=(r, args.processes, args, port, out)) for r in range(args.processes)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
        if proc.exitcode != 0:
            raise SystemExit(f"a worker failed with exit code {proc.exitcode}")
    print(json.dumps(out.get(), sort_keys=True))


if __name__ == "__main__":
    main()
