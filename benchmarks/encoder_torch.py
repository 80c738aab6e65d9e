#!/usr/bin/env python3
"""PyTorch reference for `cladmop bench --encoder`: the same model (models/all-MiniLM-L6-v2 through
transformers), the same sentences (written by `cladmop bench --encoder --sentences-out FILE`), the same
batching (sorted by token count, at most BATCH_TOKENS padded tokens and 128 sentences per batch), the same
three mean-pooled levels (hidden states after layers 2, 4, 6), one thread per process, batches dealt
round-robin to N processes started together.

    python3 benchmarks/encoder_torch.py --sentences /tmp/sentences.txt --processes 2
"""
import argparse, json, multiprocessing as mp, time

def worker(rank, size, path, model_dir, batch_tokens, barrier, out):
    import torch
    from transformers import AutoModel, AutoTokenizer
    torch.set_num_threads(1)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    texts = [l.rstrip("\n") for l in open(path, encoding="utf-8")]
    ids = [tok(t, truncation=True, max_length=256)["input_ids"] for t in texts]
    order = sorted(range(len(ids)), key=lambda i: (len(ids[i]), i))
    batches, cur = [], []
    for i in order:
        if cur and ((len(cur) + 1) * len(ids[i]) > batch_tokens or len(cur) >= 128):
            batches.append(cur); cur = []
        cur.append(i)
    if cur: batches.append(cur)
    mine = [b for k, b in enumerate(batches) if k % size == rank]
    barrier.wait()
    t0 = time.perf_counter()
    with torch.inference_mode():
        for b in mine:
            L = max(len(ids[i]) for i in b)
            x = torch.zeros(len(b), L, dtype=torch.long); m = torch.zeros(len(b), L, dtype=torch.long)
            for r, i in enumerate(b):
                x[r, :len(ids[i])] = torch.tensor(ids[i]); m[r, :len(ids[i])] = 1
            h = model(input_ids=x, attention_mask=m, output_hidden_states=True).hidden_states
            w = m.unsqueeze(-1).float()
            _ = [(h[l] * w).sum(1) / w.sum(1) for l in (2, 4, 6)]
    barrier.wait()
    out[rank] = time.perf_counter() - t0
    if rank == 0:
        out["tokens"] = sum(len(t) for t in ids); out["sentences"] = len(texts)

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--sentences", required=True)
    p.add_argument("--model-dir", default="models/all-MiniLM-L6-v2")
    p.add_argument("--processes", type=int, default=1)
    p.add_argument("--batch-tokens", type=int, default=4096)
    a = p.parse_args()
    try:   # the workers import them: a missing one would end each worker with a traceback
        import torch, transformers  # noqa: F401
    except ImportError as e:
        import sys
        print(f"encoder_torch.py: {e}; it needs torch and transformers: pip install torch transformers", file=sys.stderr)
        sys.exit(2)
    mgr = mp.Manager(); out = mgr.dict(); barrier = mp.Barrier(a.processes)
    procs = [mp.Process(target=worker, args=(r, a.processes, a.sentences, a.model_dir, a.batch_tokens, barrier, out)) for r in range(a.processes)]
    for q in procs: q.start()
    for q in procs: q.join()
    s = max(out[r] for r in range(a.processes))
    print(json.dumps({"framework": "pytorch", "processes": a.processes, "sentences": out["sentences"], "tokens": out["tokens"],
                      "seconds": s, "sentences_per_second": out["sentences"] / s, "tokens_per_second": out["tokens"] / s}))
