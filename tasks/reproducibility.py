"""One place that makes a run repeatable: seeds every generator and asks torch for deterministic kernels."""

import os
import random

import numpy as np


def set_seeds(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # CPU and every CUDA device
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed for deterministic cuBLAS
    torch.use_deterministic_algorithms(True, warn_only=True)


def resolve_device(setting: str):
    """params 'device': auto picks CUDA when a GPU is there, else the CPU. Returns a torch.device."""
    import torch

    if setting == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("params global.device is 'cuda' but no CUDA device is available")
    if setting == "auto":
        setting = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(setting)
