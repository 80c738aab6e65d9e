"""cladmop's pretrained DM branch in PyTorch.

    from cladmop_torch import load_pretrained, inputs_from_store
    model = load_pretrained("runs/main")                       # torch.nn.Module, eval mode
    nctids, inputs = inputs_from_store("data/features/top.store", model, csv="data/top/phase_I_valid.csv")
    f_dm = model(*inputs)                                      # (n, E), equal to `cladmop embed`
"""
from .checkpoint import CheckpointError, load_pretrained, resolve_checkpoint
from .features import FeatureStore, ICD10Hierarchy, InputBuilder, inputs_from_store
from .model import DMBranch, Layer
from .names import tensor_map

__all__ = ["CheckpointError", "DMBranch", "FeatureStore", "ICD10Hierarchy", "InputBuilder", "Layer", "inputs_from_store",
           "load_pretrained", "resolve_checkpoint", "tensor_map"]
__version__ = "0.1.0"
