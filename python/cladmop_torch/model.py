"""The DM branch of CLaDMoP in PyTorch: the same computation as cladmop's Sources/Model (CLaDMoP+Forward.swift).

This is the one PyTorch reference of the model: `load_pretrained` fills it with a cladmop checkpoint, the golden
whole-model test (Tests/Fixtures/make_golden.py) and the speed reference (benchmarks/train_torch.py) import it.

Inputs (n trials; Lm molecule tokens, Lc codes, Ls sentences, each padded to the batch maximum):
    mol_ids (n, Lm) long      SMILES token ids (0 PAD, 1 UNK, 2 <none> for a trial without SMILES)
    mol_pos (n, Lm) long      molecule position of each token (0 ... max_molecules - 1)
    mol_mask (n, Lm) bool     True for a real token
    code_ids (n, Lc, K+1) long  per code: ancestor row + 1 at each ICD depth 1..K (0 = no ancestor), then the
                              category row (the last row is "no code")
    code_mask (n, Lc) bool
    criteria (3, n, Ls, E)    sentence vectors of the frozen text encoder per level (coarse, medium, fine)
    sentence_mask (n, Ls) bool
Output: f_DM (n, E); with `return_pooled=True` also U^{D,M} pooled: mean over the fine-level tokens of
LayerNorm(A_fine), (n, d).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

# Rows per ICD-10-CM depth (the 2025 tree of data/icd10): the default table sizes.
ICD_SIZES = [22, 284, 1917, 10262, 17924, 27407, 40074]


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
    """Pre-LN layer: x = x + MHA(LN_q(x), LN_kv(kv)); x = x + FFN(LN_ffn(x)) (self-attention when kv is None).

    attention: "mha" (nn.MultiheadAttention, the layout cladmop checkpoints map to) or "sdpa"."""

    def __init__(self, d, heads, cross=False, attention="mha"):
        super().__init__()
        if attention not in ("mha", "sdpa"):
            raise ValueError(f'attention={attention!r}: expected "mha" or "sdpa"')
        self.ln_q = nn.LayerNorm(d)
        self.ln_kv = nn.LayerNorm(d) if cross else None
        self.sdpa = attention == "sdpa"
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
    """Molecule and disease enrichment, three grouping blocks (coarse, medium, fine) over K_x = [molecules;
    diseases; projected criteria; previous block] with learnable centroids, then f_DM = W mean(LN(A_fine)) + b.

    icd_sizes: rows per ICD depth (default ICD_SIZES); category_count: rows of the category table including the
    final "no code" row (default icd_sizes[2] + 1, as cladmop builds it from the tree)."""

    def __init__(self, d, heads, mol_layers, dis_layers, groups, selfs, centroids, encoder_dim, icd_depth,
                 mol_vocab=100, max_molecules=8, icd_sizes=None, category_count=None, attention="mha"):
        super().__init__()
        all_sizes = list(icd_sizes or ICD_SIZES)
        sizes = all_sizes[:icd_depth]
        if category_count is None:
            category_count = all_sizes[2] + 1 if len(all_sizes) >= 3 else 2
        self.mol_token = nn.Embedding(mol_vocab, d)
        self.mol_position = nn.Embedding(max_molecules, d)
        self.mol = nn.ModuleList(Layer(d, heads, attention=attention) for _ in range(mol_layers))
        # Row 0 of each table is "no ancestor at this depth" (zero, like cladmop's -1).
        self.icd = nn.ModuleList(nn.Embedding(n + 1, d, padding_idx=0) for n in sizes)
        self.category = nn.Embedding(category_count, d)
        self.dis = nn.ModuleList(Layer(d, heads, attention=attention) for _ in range(dis_layers))
        self.proj = nn.ModuleList(nn.Linear(encoder_dim, d) for _ in range(3))
        self.source_type = nn.ParameterList(nn.Parameter(0.02 * torch.randn(4, d)) for _ in range(3))
        self.centroids = nn.ParameterList(nn.Parameter(torch.randn(max(centroids >> g, 1), d))
                                          for _ in range(3) for g in range(groups))
        self.cross = nn.ModuleList(Layer(d, heads, cross=True, attention=attention) for _ in range(3 * groups))
        self.selfs = nn.ModuleList(nn.ModuleList(Layer(d, heads, attention=attention) for _ in range(selfs))
                                   for _ in range(3 * groups))
        self.groups = groups
        self.norm = nn.LayerNorm(d)
        self.out = nn.Linear(d, encoder_dim)

    def forward(self, mol_ids, mol_pos, mol_mask, code_ids, code_mask, criteria, sentence_mask, return_pooled=False):
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
                masks.append(torch.ones(previous.shape[:2], dtype=torch.bool, device=previous.device))
            kv, ignore = torch.cat(parts, 1), ~torch.cat(masks, 1)
            for g in range(self.groups):
                i = x * self.groups + g
                y = self.cross[i](self.centroids[i].expand(n, -1, -1), kv, ignore if g == 0 else None)
                for layer in self.selfs[i]:
                    y = layer(y)
                kv = y
            previous = y
        pooled = self.norm(previous).mean(1)
        f_dm = self.out(pooled)
        return (f_dm, pooled) if return_pooled else f_dm
