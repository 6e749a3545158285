"""Mixed precision: autocast to bf16 (CPU or CUDA) or fp16 (CUDA, with loss scaling)."""
from __future__ import annotations

import contextlib

import torch

from kdlib.errors import KDError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(amp: str, device: torch.device, run_name: str):
    if amp == "none":
        return contextlib.nullcontext()
    if amp == "fp16" and device.type != "cuda":
        raise KDError(f"runs.{run_name}.amp: fp16 needs a CUDA device (this run is on {device}); use bf16")
    return torch.autocast(device.type, dtype=DTYPES[amp])


def grad_scaler(amp: str, device: torch.device) -> torch.amp.GradScaler:
    """Loss scaling keeps small fp16 gradients from underflowing; bf16 has fp32's range and needs none."""
    return torch.amp.GradScaler(device.type, enabled=amp == "fp16")
