"""Training on several processes: with KDLIB_NPROC=N a training stage re-executes itself under torchrun with N
processes (one GPU each, or gloo on CPU), so both DAG tools run the same command on one device or many.

Torch-free on purpose: the Snakefile reads the process count to request that many GPUs per training job, and
whether this host has a GPU at all.
"""
from __future__ import annotations

import os
import shutil
import sys

from kdlib.errors import KDError

ENV = "KDLIB_NPROC"


def processes() -> int:
    """The number of training processes KDLIB_NPROC asks for (default 1)."""
    value = os.environ.get(ENV, "1")
    if not value.isdigit() or int(value) < 1:
        raise KDError(f"{ENV}={value!r}: expected the number of training processes, a whole number from 1")
    return int(value)


def gpu_host() -> bool:
    """Whether jobs started here train on a GPU, without importing torch: KDLIB_DEVICE decides when set (as in
    kdlib.engine.device.pick_device), else the NVIDIA driver's tool being installed."""
    wanted = os.environ.get("KDLIB_DEVICE")
    return wanted.startswith("cuda") if wanted else shutil.which("nvidia-smi") is not None


def under_torchrun() -> bool:
    return "LOCAL_RANK" in os.environ


def relaunch_under_torchrun(argv: list[str]) -> None:
    """Replace this process by `torchrun --standalone --nproc-per-node N <argv>` when KDLIB_NPROC > 1 asks for
    it and this process is not already one of torchrun's workers."""
    n = processes()
    if n > 1 and not under_torchrun():
        os.execv(sys.executable, [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                  f"--nproc-per-node={n}", *argv])
