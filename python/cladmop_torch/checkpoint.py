"""Loading cladmop checkpoints (docs/checkpoints.md) into `DMBranch`."""
import json
import os
import warnings

import torch
from safetensors.torch import load_file

from .model import DMBranch
from .names import tensor_map


# The checkpoint versions cladmop reads (CheckpointMeta.readableVersions; a CLI test keeps the two in step): the
# fields this loader uses are in every one of them.
READABLE_VERSIONS = range(2, 9)


class CheckpointError(ValueError):
    """A checkpoint path or file that cannot be loaded; the message names the file and what was expected."""


def run_folder(path):
    """The run folder `path` names when it is one of the run's own pointers, as cladmop's runFolder(named:): RUN for
    RUN/best.json, RUN/checkpoints and RUN/checkpoints/best.json (a pretraining run's best.json, whose path is relative
    to RUN); any other path as given."""
    current = str(path).rstrip("/") or "/"
    if os.path.basename(current) == "best.json" and os.path.isfile(current):
        current = os.path.dirname(current) or "."
    parent = os.path.dirname(current) or "."
    if os.path.basename(current) == "checkpoints" and os.path.isfile(os.path.join(parent, "checkpoints", "best.json")) \
            and not os.path.exists(os.path.join(parent, "best.json")):
        current = parent
    return current if current != str(path).rstrip("/") else str(path)


def resolve_checkpoint(path, max_links=4):
    """The checkpoint JSON that `path` names, as cladmop resolves it: the .json itself, its .safetensors, or a run
    directory (its best.json or checkpoints/best.json, whose "checkpoint" may name another run directory; a run's
    best.json or checkpoints folder names the run)."""
    if not str(path):
        raise CheckpointError("an empty path: expected a checkpoint (.safetensors or .json) or a run directory")
    current, visited = run_folder(path), []
    while os.path.isdir(current):
        key = os.path.realpath(current)
        if key in visited:
            raise CheckpointError(f"{path}: best.json links form a cycle ({' -> '.join(visited + [key])})")
        if len(visited) >= max_links:
            raise CheckpointError(f"{path}: more than {max_links} best.json links; name a checkpoint file")
        visited.append(key)
        for candidate in (os.path.join(current, "best.json"), os.path.join(current, "checkpoints", "best.json")):
            if os.path.isfile(candidate):
                with open(candidate) as f:
                    try:
                        target = json.load(f)["checkpoint"]
                    except (ValueError, KeyError, TypeError, RecursionError):   # RecursionError: nested past Python's limit
                        target = None
                if not isinstance(target, str) or not target:
                    raise CheckpointError(f'{candidate}: expected a JSON object with a "checkpoint" path')
                current = target if os.path.isabs(target) else os.path.join(current, target)
                break
        else:
            raise CheckpointError(f"{current}: a directory without best.json; name a checkpoint file")
    if current.endswith(".safetensors"):
        return current[:-len(".safetensors")] + ".json"
    if current.endswith(".json"):
        return current
    raise CheckpointError(f"{current}: expected a checkpoint (.safetensors or .json) or a run directory")


def _ensemble_members(path):
    """How many members a fine-tuned run's best.json lists (0 for anything else)."""
    best = os.path.join(run_folder(path), "best.json")
    try:
        with open(best) as f:
            members = json.load(f).get("members")
    except (OSError, ValueError, AttributeError, RecursionError):
        return 0
    return len(members) if isinstance(members, list) else 0


def read_metadata(json_path):
    """The checkpoint's metadata (format cladmop-checkpoint, version 2 to 8: 3 adds pretrainedLink, 4 corpus, 5
    head.trainedTrials, 6 storeEncoderWeights and head.heldOutFold, 7 icdHierarchy, 8 sctTrials; none of them is needed here)."""
    try:
        with open(json_path) as f:
            meta = json.load(f)
    except OSError as e:
        raise CheckpointError(f"{json_path}: cannot read the checkpoint metadata ({e.strerror})") from None
    except (ValueError, RecursionError) as e:   # RecursionError: nested past Python's limit
        raise CheckpointError(f"{json_path}: not JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != "cladmop-checkpoint" or meta.get("version") not in READABLE_VERSIONS:
        raise CheckpointError(f"{json_path}: expected a cladmop-checkpoint of version {READABLE_VERSIONS[0]} to {READABLE_VERSIONS[-1]}")
    return meta


def pretrained_of(json_path, meta):
    """The pretraining checkpoint a fine-tuned one adds to, as cladmop loads it: the run's own link
    (RUN/pretrained/, `pretrainedLink`, relative to the checkpoint's real folder) when it is there, else the path
    recorded at fine-tuning; its tensors' checksum must be the one recorded (`pretrainedChecksum`).
    Returns (json_path, metadata)."""
    candidates = []
    link = meta.get("pretrainedLink")
    if link:
        kept = os.path.normpath(os.path.join(os.path.dirname(os.path.realpath(json_path)), link))
        if os.path.exists(kept):
            candidates.append(kept)
    candidates.append(meta["pretrained"])
    problems = []
    for path in candidates:
        try:
            pre = read_metadata(path)
        except CheckpointError as e:
            problems.append(str(e))
            continue
        if pre.get("tensorsChecksum") != meta.get("pretrainedChecksum"):
            problems.append(f"{path}: pretrained checkpoint changed since fine-tuning (checksum {pre.get('tensorsChecksum')}, "
                            f"recorded {meta.get('pretrainedChecksum')})")
            continue
        tensors = os.path.join(os.path.dirname(path), pre.get("tensorsFile", ""))
        if not os.path.isfile(tensors) or os.path.getsize(tensors) != pre.get("tensorsBytes"):
            problems.append(f"{tensors}: missing, or not the {pre.get('tensorsBytes')} bytes its metadata records")
            continue
        if path != candidates[0]:
            warnings.warn(f"{problems[0]}; loading the pretrained checkpoint from {path} instead")
        return path, pre
    raise CheckpointError(problems[0])


def _tensors_of(json_path, meta):
    path = os.path.join(os.path.dirname(json_path), meta["tensorsFile"])
    if not os.path.isfile(path):
        raise CheckpointError(f"{json_path}: its tensors file {path} is missing")
    return load_file(path)


def build_model(model_config, attention="mha"):
    """An untrained DMBranch of cladmop's ModelConfig (the metadata's "model")."""
    c = model_config
    return DMBranch(c["dim"], c["heads"], c["molLayers"], c["disLayers"], c["groupingLayers"], c["selfLayers"],
                    c["centroids"], c["encoderDim"], len(c["icdTableSizes"]), mol_vocab=c["molVocab"],
                    max_molecules=c["maxMolecules"], icd_sizes=c["icdTableSizes"], category_count=c["categoryCount"],
                    attention=attention)


def load_pretrained(checkpoint, dtype=torch.float32, attention="mha"):
    """The DM branch of a cladmop checkpoint as a torch.nn.Module (eval mode) with cladmop's weights.

    checkpoint: a run directory (its best checkpoint), a step-N.json or a step-N.safetensors. A fine-tuned run
    gives its pretrained DM branch with the LoRA adapters merged into the attention weights
    (W + alpha / r * B A, as cladmop applies them); the outcome head is not part of the DM branch.
    The module has `.cladmop_metadata` (the checkpoint JSON) and `.logit_scale` (exp(loss.log_scale)).
    """
    json_path = resolve_checkpoint(checkpoint)
    members = _ensemble_members(checkpoint)
    if members > 1:
        # An ensemble's members share the pretrained branch but not their LoRA adapters: this is one member's.
        warnings.warn(f"{checkpoint} is an ensemble of {members} fine-tuned members; this is the DM branch of one of them, "
                      f"{json_path} (name a member, RUN/members/k, to choose)")
    meta = read_metadata(json_path)
    lora = None
    if meta.get("kind") == "finetune":
        if not meta.get("pretrained"):
            raise CheckpointError(f"{json_path}: a fine-tuned checkpoint without pretraining (--pretrained none) "
                                  "holds its whole DM branch; load that checkpoint's tensors directly")
        lora, lora_meta = _tensors_of(json_path, meta), meta
        json_path, meta = pretrained_of(json_path, meta)
    tensors = _tensors_of(json_path, meta)
    model = build_model(meta["model"], attention=attention)
    targets = tensor_map(model)
    missing = sorted(set(targets) - set(tensors))
    if missing:
        raise CheckpointError(f"{json_path}: tensors missing from the checkpoint: {', '.join(missing[:5])}")
    with torch.no_grad():
        for name, (param, index) in targets.items():
            src, dst = tensors[name], param[index]
            if tuple(src.shape) != tuple(dst.shape):
                raise CheckpointError(f"{json_path}: {name} has shape {tuple(src.shape)}, the model expects {tuple(dst.shape)}")
            dst.copy_(src)
        for table in model.icd:
            table.weight[0].zero_()
        if lora is not None:
            head = lora_meta["head"]
            scaling = head["loraAlpha"] / head["loraRank"]
            for name in sorted(k for k in lora if k.endswith(".lora_a")):
                base = name[:-len(".lora_a")]
                param, index = targets[base + ".weight"]
                param[index] += scaling * lora[base + ".lora_b"] @ lora[name]
    model.logit_scale = float(torch.exp(tensors["loss.log_scale"].double()).item()) if "loss.log_scale" in tensors else None
    model.cladmop_metadata = meta
    return model.to(dtype).eval()
