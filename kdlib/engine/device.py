import os

import torch

from kdlib.errors import KDError


def pick_device() -> torch.device:
    """CUDA when present, else CPU; the KDLIB_DEVICE environment variable overrides (e.g. cpu, cuda:1)."""
    wanted = os.environ.get("KDLIB_DEVICE")
    if not wanted:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(wanted)
    except RuntimeError:
        raise KDError(f"KDLIB_DEVICE={wanted!r}: not a device (e.g. cpu, cuda, cuda:1)") from None
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise KDError(f"KDLIB_DEVICE={wanted!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type not in ("cpu", "cuda"):
        raise KDError(f"KDLIB_DEVICE={wanted!r}: kdlib runs on cpu or cuda")
    return device


def pin_training_threads(device: torch.device) -> None:
    """On the CPU, train on one intra-op thread. Float reductions split over threads round differently, and
    training amplifies that (the demo's cifar_quick ended at 29.6 % on one thread, 24.0 % on two): one thread
    makes a run's result independent of the host's core count and of the tool that launched it. A CPU host runs
    its jobs side by side instead (the Snakefile gives each one core)."""
    if device.type == "cpu":
        torch.set_num_threads(1)
