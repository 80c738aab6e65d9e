"""Model inputs from a cladmop feature store, built exactly as cladmop's BatchBuilder builds them
(Sources/Training/Data/Features.swift): the checkpoint's SMILES vocabulary and truncation limits, the ICD-10
tree's ancestor rows, and the frozen encoder's sentence vectors read from the store.

A CSV's rows become inputs once `cladmop featurize` has put them in a store (the product featurizes; this
package only reads): `inputs_from_store(store, checkpoint, csv=...)` takes the rows that came from that file.
"""
import json
import mmap
import os
import struct
import warnings

import torch

from .checkpoint import CheckpointError, pretrained_of, read_metadata, resolve_checkpoint

LEVELS = ("coarse", "medium", "fine")
NONE_TOKEN = "<none>"


def checksum_hex(data):
    """cladmop's checksum64 (Sources/Support/Files.swift) of `data` in lower-case hexadecimal: a 64-bit FNV-1a
    variant over little-endian 8-byte words, each step followed by h ^= h >> 29, then the tail bytes."""
    mask, prime = (1 << 64) - 1, 0x100000001B3
    h, words = 0xCBF29CE484222325, len(data) // 8
    for (w,) in struct.iter_unpack("<Q", memoryview(data)[:words * 8]):
        h = ((h ^ w) * prime) & mask
        h ^= h >> 29
    for byte in data[words * 8:]:
        h = ((h ^ byte) * prime) & mask
    return format(h, "x")


class FeatureStore:
    """A cladmop feature store (format version 1): header, metadata JSON, Float32 payload (sentences, 3, dim).
    Sizes are checked here; the checksum is cladmop's to verify (`cladmop featurize` wrote it)."""

    HEADER = struct.Struct("<8sIIQQQQQ")

    def __init__(self, path):
        self.path = str(path)
        with open(self.path, "rb") as f:
            if os.fstat(f.fileno()).st_size < self.HEADER.size:
                raise ValueError(f"{path}: not a cladmop feature store (too short)")
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        b = self._map
        if len(b) < self.HEADER.size:
            raise ValueError(f"{path}: not a cladmop feature store (too short)")
        magic, version, levels, dim, sentences, meta_bytes, payload_offset, _ = self.HEADER.unpack_from(b, 0)
        if magic != b"CLADMOPF":
            raise ValueError(f"{path}: not a cladmop feature store (bad magic)")
        if version != 1 or levels != 3:
            raise ValueError(f"{path}: feature store version {version} with {levels} levels; this reader reads version 1, 3 levels")
        if payload_offset < self.HEADER.size + meta_bytes or len(b) != payload_offset + sentences * levels * dim * 4:
            raise ValueError(f"{path}: truncated or corrupt feature store (header sizes do not match the file)")
        try:
            self.meta = json.loads(bytes(b[self.HEADER.size:self.HEADER.size + meta_bytes]))
        except (ValueError, RecursionError) as e:   # RecursionError: nested past Python's limit
            raise ValueError(f"{path}: the feature store's metadata is not JSON ({e})") from None
        self.dim, self.sentence_count = dim, sentences
        with warnings.catch_warnings():   # read-only mapping: the vectors are only ever read
            warnings.simplefilter("ignore", UserWarning)
            self.vectors = torch.frombuffer(b, dtype=torch.float32, offset=payload_offset,
                                            count=sentences * 3 * dim).view(sentences, 3, dim)
        self.trials = self.meta["trials"]

    def rows_of(self, csv):
        """The rows read from `csv`, in store order: matched by file name and, as cladmop matches them, by the
        checksum of the file's bytes (the store's identity records it): another file of the same name (a subset, an
        edited copy) is refused, not answered with the rows of the file the store was made from."""
        name = os.path.basename(str(csv))
        recorded = self.meta.get("identity", {}).get("sources", {}).get(name)
        rows = [t for t in self.trials if t["source"].rsplit(":", 1)[0] == name]   # source: "file:line"
        if not rows or recorded is None:
            raise ValueError(f"{self.path}: holds no rows of {name}; featurize it first: "
                             f"cladmop featurize --data {csv} --output STORE")
        with open(csv, "rb") as f:
            actual = checksum_hex(f.read())
        if actual != recorded:
            raise ValueError(f"{self.path}: holds the rows of another {name} (its bytes' checksum {recorded}, {csv}'s {actual}); "
                             f"featurize this file into a store of its own: cladmop featurize --data {csv} --output STORE")
        return rows


class ICD10Hierarchy:
    """The ICD-10-CM tree (id<TAB>parent<TAB>depth<TAB>description); node rows per depth in file order."""

    def __init__(self, path):
        self.parent, self.depth, self.node_index = {}, {}, []
        with open(path, encoding="utf-8-sig", newline="") as f:
            lines = f.read().replace("\r\n", "\n").replace("\r", "\n").split("\n")
        order = []
        for number, line in enumerate(lines, 1):
            if number == 1 or not line:
                continue
            cols = line.split("\t")
            if len(cols) < 3 or not cols[2].isdigit():
                raise ValueError(f"{path}:{number}: expected id<TAB>parent<TAB>depth<TAB>description")
            self.parent[cols[0]], self.depth[cols[0]] = cols[1], int(cols[2])
            order.append((cols[0], int(cols[2])))
        if not order:
            raise ValueError(f"{path}: no node rows (expected a header, then id<TAB>parent<TAB>depth<TAB>description lines)")
        self.node_index = [{} for _ in range(max(d for _, d in order))]
        for node, d in order:
            self.node_index[d - 1][node] = len(self.node_index[d - 1])

    def resolve(self, code):
        """The code if known at depth >= 3, else its longest known prefix ("C34.901" -> "C34.90" -> ...)."""
        c = code.upper()
        while c:
            if self.depth.get(c, 0) >= 3:
                return c
            c = c[:-1]
            if c.endswith("."):
                c = c[:-1]
        return None

    def ancestor_rows(self, code, limit):
        rows, node = [-1] * limit, code
        while node in self.depth:
            d = self.depth[node]
            if d <= limit:
                rows[d - 1] = self.node_index[d - 1][node]
            node = self.parent[node]
        return rows

    def category(self, code):
        node = code
        while node in self.depth:
            if self.depth[node] == 3:
                return node
            node = self.parent[node]
        return None


class InputBuilder:
    """Padded DMBranch inputs of stored trials under a checkpoint's feature space (metadata "features")."""

    def __init__(self, store, metadata, hierarchy):
        self.store, self.hierarchy = store, hierarchy
        space = metadata["features"]
        self.tokens = {t: i for i, t in enumerate(space["smilesVocabulary"]["tokens"])}
        self.icd_depth, self.max_sentences = space["icdDepth"], space["maxSentences"]
        self.max_mol_tokens, self.max_molecules, self.max_codes = space["maxMolTokens"], space["maxMolecules"], space["maxCodes"]
        self.category_count = len(hierarchy.node_index[2]) + 1
        model = metadata["model"]
        if model["encoderDim"] != store.dim:
            raise ValueError(f"{store.path}: sentence vectors have width {store.dim}, the checkpoint expects {model['encoderDim']}")
        if model["categoryCount"] != self.category_count or model["icdTableSizes"] != [len(x) for x in hierarchy.node_index[:self.icd_depth]]:
            raise ValueError("the ICD-10 hierarchy does not match the checkpoint's tables (pass the tree it was trained with)")

    def molecules(self, t):
        out = []
        for m, tokens in enumerate(t["smiles"]):
            for tok in tokens:
                if len(out) >= self.max_mol_tokens:
                    return out
                out.append((self.tokens.get(tok, 1), min(m, self.max_molecules - 1)))
        return out or [(self.tokens[NONE_TOKEN], 0)]

    def codes(self, t):
        seen, out = set(), []
        for code in (c for disease in t["icd"] for c in disease):
            if code in seen or len(out) >= self.max_codes:
                continue
            seen.add(code)
            resolved = self.hierarchy.resolve(code)
            if resolved is None:
                continue
            rows = self.hierarchy.ancestor_rows(resolved, self.icd_depth)
            category = self.hierarchy.category(resolved)
            rows.append(self.hierarchy.node_index[2].get(category, self.category_count - 1) if category else self.category_count - 1)
            out.append(rows)
        return out or [[-1] * self.icd_depth + [self.category_count - 1]]

    def batch(self, trials, dtype=torch.float32):
        """(mol_ids, mol_pos, mol_mask, code_ids, code_mask, criteria, sentence_mask) for DMBranch.forward."""
        n = len(trials)
        mols = [self.molecules(t) for t in trials]
        codes = [self.codes(t) for t in trials]
        sentences = [t["sentences"][:self.max_sentences] for t in trials]
        lm, lc = max(1, max(map(len, mols))), max(1, max(map(len, codes)))
        ls, w, e = max(1, max(map(len, sentences))), self.icd_depth + 1, self.store.dim
        mol_ids = torch.zeros(n, lm, dtype=torch.long)
        mol_pos = torch.zeros(n, lm, dtype=torch.long)
        mol_mask = torch.zeros(n, lm, dtype=torch.bool)
        code_ids = torch.zeros(n, lc, w, dtype=torch.long)
        code_mask = torch.zeros(n, lc, dtype=torch.bool)
        criteria = torch.zeros(3, n, ls, e, dtype=dtype)
        sentence_mask = torch.zeros(n, ls, dtype=torch.bool)
        for i in range(n):
            for j, (tok, pos) in enumerate(mols[i]):
                mol_ids[i, j], mol_pos[i, j], mol_mask[i, j] = tok, pos, True
            for j, rows in enumerate(codes[i]):
                # torch's ICD tables have row 0 = "no ancestor": cladmop's row r is r + 1 (-1 -> 0)
                code_ids[i, j, :self.icd_depth] = torch.tensor(rows[:self.icd_depth]) + 1
                code_ids[i, j, self.icd_depth] = rows[self.icd_depth]
                code_mask[i, j] = True
            if sentences[i]:
                s = torch.tensor(sentences[i])
                criteria[:, i, :len(s)] = self.store.vectors[s].transpose(0, 1).to(dtype)
                sentence_mask[i, :len(s)] = True
        return mol_ids, mol_pos, mol_mask, code_ids, code_mask, criteria, sentence_mask


def inputs_from_store(store, checkpoint, csv=None, nctids=None, hierarchy=None, dtype=torch.float32):
    """(nctids, inputs) for the trials of `store` (a path or FeatureStore): the rows of `csv` (the file the store was
    made from, by name and bytes; in store order, as `cladmop embed --data CSV` orders them), else those of `nctids` in
    that order, else all.

    checkpoint: a run directory, checkpoint .json/.safetensors, or a model from `load_pretrained` (its feature
    space: SMILES vocabulary, limits). hierarchy: the ICD-10 tree file (default: the checkpoint's
    data.icd_hierarchy, relative to the current directory as in cladmop)."""
    if not isinstance(store, FeatureStore):
        store = FeatureStore(store)
    if hasattr(checkpoint, "cladmop_metadata"):
        meta = checkpoint.cladmop_metadata
    else:
        json_path = resolve_checkpoint(checkpoint)
        meta = read_metadata(json_path)
        if meta.get("kind") == "finetune" and meta.get("pretrained"):
            _, meta = pretrained_of(json_path, meta)
    if hierarchy is None:
        hierarchy = meta["spec"]["data"]["icdHierarchy"]
        if not os.path.isfile(hierarchy):
            raise CheckpointError(f"the checkpoint's ICD-10 hierarchy {hierarchy} is not found from {os.getcwd()}; pass hierarchy=")
    if not isinstance(hierarchy, ICD10Hierarchy):
        hierarchy = ICD10Hierarchy(hierarchy)
    if csv is not None:
        rows = store.rows_of(csv)
    elif nctids is not None:
        by_id = {t["nctid"]: t for t in store.trials}
        missing = [i for i in nctids if i not in by_id]
        if missing:
            raise ValueError(f"{store.path}: no trial {missing[0]} ({len(missing)} of {len(nctids)} missing)")
        rows = [by_id[i] for i in nctids]
    else:
        rows = store.trials
    builder = InputBuilder(store, meta, hierarchy)
    return [t["nctid"] for t in rows], builder.batch(rows, dtype=dtype)
