"""Data-parallel training over the processes torchrun starts (see kdlib.launch): joining the process group,
the gradient averaging wrapper, and sums over ranks. In a single process every function is the identity or
does nothing, so the trainer has one code path.

The params' batch_size is the global batch: each of N ranks takes batch_size / N images of it, so the lr stays
as it is for any N (the linear scaling rule applies only when batch_size itself changes: lr x k for batch x k).
"""
from __future__ import annotations

import logging
import os

import torch
import torch.distributed as dist
from torch import nn


def start(device: torch.device) -> torch.device:
    """Join torchrun's process group if this process is one of its workers; returns this rank's device
    (its own GPU, cuda:LOCAL_RANK) and silences the other ranks' progress logs."""
    if "LOCAL_RANK" not in os.environ:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if not is_main():
        logging.getLogger("kdlib").setLevel(logging.WARNING)
    return device


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    """Rank 0 alone writes checkpoints, history and metrics."""
    return rank() == 0


def data_parallel(module: nn.Module, device: torch.device, may_skip_parameters: bool) -> nn.Module:
    """`module` wrapped so that backward averages its gradients over the ranks; `module` itself when alone.
    `may_skip_parameters`: some parameters can sit out a step (a projector while alpha is 0), which costs DDP a
    search of the autograd graph every step, so only then."""
    if not dist.is_initialized():
        return module
    return nn.parallel.DistributedDataParallel(module, device_ids=[device] if device.type == "cuda" else None,
                                               find_unused_parameters=may_skip_parameters)


def all_sum(values: list[float], device: torch.device) -> list[float]:
    """Element-wise sums over the ranks."""
    if not dist.is_initialized():
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def share_buffers(module: nn.Module) -> None:
    """Rank 0's buffers (BatchNorm running statistics, which each rank updates from its own images) on every
    rank: all ranks then evaluate, and rank 0 saves, the same model."""
    if dist.is_initialized():
        for buffer in module.buffers():
            dist.broadcast(buffer, 0)
