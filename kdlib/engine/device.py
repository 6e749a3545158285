import os

import torch


def pick_device() -> torch.device:
    """CUDA when present, else CPU; the KDLIB_DEVICE environment variable overrides (e.g. cpu, cuda:1)."""
    wanted = os.environ.get("KDLIB_DEVICE")
    if wanted:
        return torch.device(wanted)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
