#!/usr/bin/env python3
"""PyTorch reference of cladmop's training step at the SPEC 8 shape (docs/performance.md).

The DM branch of python/cladmop_torch (the same model as Sources/Model/CLaDMoP.swift: pre-LN transformer layers, molecule and disease
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
import sys
import time

try:
    import torch
    import torch.distributed as dist
    import torch.multiprocessing as mp
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as e:
    print(f"train_torch.py: {e}; it needs torch: pip install torch", file=sys.stderr)
    sys.exit(2)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from cladmop_torch.model import DMBranch, ICD_SIZES  # noqa: E402  (the one PyTorch reference of the model)


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
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    if hasattr(os, "sched_setaffinity") and world <= os.cpu_count():
        os.sched_setaffinity(0, {rank})
    torch.manual_seed(1)
    model = DMBranch(args.dim, args.heads, args.mol_layers, args.dis_layers, args.groups, args.selfs, args.centroids,
                     args.encoder_dim, args.icd_depth, attention=args.attention)
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
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.autocast == "bf16"):
            f_dm = ddp(*batch).float()
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
        out.put({"implementation": f"pytorch {torch.__version__} eager, gloo DDP, attention {args.attention}", "precision": args.autocast,
                 "world_size": world,
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
    p.add_argument("--autocast", choices=["fp32", "bf16"], default="fp32",
                   help="bf16: the forward pass under torch.autocast('cpu', dtype=torch.bfloat16) (PyTorch's mixed precision)")
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
