"""cladmop's tensor names (docs/checkpoints.md) for the parameters of `DMBranch`.

`tensor_map(model)` gives, for every cladmop name, the torch parameter and the index of the part that holds it:
nn.MultiheadAttention's packed in_proj is split into attn.q, attn.k, attn.v (rows 0..d, d..2d, 2d..3d); its
out_proj is attn.o; ffn.0 / ffn.2 are ffn.fc1 / ffn.fc2; the ICD tables' torch row 0 ("no ancestor") has no
cladmop row, so cladmop's row r is torch's row r + 1. Linear weights are (out, in) in both.
"""
LEVELS = ("coarse", "medium", "fine")
ALL = slice(None)


def _layer(prefix, layer):
    out = {}
    d = layer.ln_q.weight.shape[0]
    for ln in ("ln_q", "ln_kv", "ln_ffn"):
        m = getattr(layer, ln)
        if m is not None:
            out[f"{prefix}.{ln}.weight"] = (m.weight, ALL)
            out[f"{prefix}.{ln}.bias"] = (m.bias, ALL)
    a = layer.attn
    if layer.sdpa:
        for name in "qkvo":
            lin = getattr(a, name)
            out[f"{prefix}.attn.{name}.weight"] = (lin.weight, ALL)
            out[f"{prefix}.attn.{name}.bias"] = (lin.bias, ALL)
    else:
        for k, name in enumerate("qkv"):
            out[f"{prefix}.attn.{name}.weight"] = (a.in_proj_weight, slice(k * d, (k + 1) * d))
            out[f"{prefix}.attn.{name}.bias"] = (a.in_proj_bias, slice(k * d, (k + 1) * d))
        out[f"{prefix}.attn.o.weight"] = (a.out_proj.weight, ALL)
        out[f"{prefix}.attn.o.bias"] = (a.out_proj.bias, ALL)
    for k, name in ((0, "fc1"), (2, "fc2")):
        out[f"{prefix}.ffn.{name}.weight"] = (layer.ffn[k].weight, ALL)
        out[f"{prefix}.ffn.{name}.bias"] = (layer.ffn[k].bias, ALL)
    return out


def tensor_map(model):
    """{cladmop name: (torch parameter, index)} for every parameter of a DMBranch (not loss.log_scale)."""
    out = {"mol.token.weight": (model.mol_token.weight, ALL), "mol.position.weight": (model.mol_position.weight, ALL)}
    for k, layer in enumerate(model.mol):
        out.update(_layer(f"mol.layer{k}", layer))
    for k, table in enumerate(model.icd):
        out[f"dis.icd_depth{k + 1}.weight"] = (table.weight, slice(1, None))
    out["dis.category.weight"] = (model.category.weight, ALL)
    for k, layer in enumerate(model.dis):
        out.update(_layer(f"dis.layer{k}", layer))
    for x, level in enumerate(LEVELS):
        name = f"fusion.{level}"
        out[f"{name}.proj.weight"] = (model.proj[x].weight, ALL)
        out[f"{name}.proj.bias"] = (model.proj[x].bias, ALL)
        out[f"{name}.source_type"] = (model.source_type[x], ALL)
        for g in range(model.groups):
            i = x * model.groups + g
            out[f"{name}.group{g}.centroids"] = (model.centroids[i], ALL)
            out.update(_layer(f"{name}.group{g}.cross", model.cross[i]))
            for s, layer in enumerate(model.selfs[i]):
                out.update(_layer(f"{name}.group{g}.self{s}", layer))
    out["head.norm.weight"] = (model.norm.weight, ALL)
    out["head.norm.bias"] = (model.norm.bias, ALL)
    out["head.proj.weight"] = (model.out.weight, ALL)
    out["head.proj.bias"] = (model.out.bias, ALL)
    return out
