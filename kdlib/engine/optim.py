"""Optimizers and per-step learning-rate schedules."""
from __future__ import annotations

import math

import torch

from kdlib.config import Optimizer, Schedule


def build_optimizer(spec: Optimizer, params) -> torch.optim.Optimizer:
    if spec.name == "sgd":
        return torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum,
                               weight_decay=spec.weight_decay, nesterov=spec.nesterov)
    return torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay)


def warmup_cosine(step: int, total: int, warmup: int, floor: float) -> float:
    """LR multiplier at `step`: linear from 1/warmup up to 1 over `warmup` steps, then cosine to `floor`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def stagewise(step: int, stage_steps: list[int], floor: float) -> float:
    """LR multiplier at `step` for StableKD: in stage c (of stage_steps[c] steps) a triangle from `floor` up by
    (1 - floor) / 2^c at mid-stage and back down, so each stage warms up and anneals with half the amplitude
    of the one before (CyclicLR's triangular2)."""
    start = 0
    for c, steps in enumerate(stage_steps):
        if step < start + steps or c == len(stage_steps) - 1:
            position = min(1.0, (step - start + 0.5) / steps)
            return floor + (1 - floor) * 0.5 ** c * (1 - abs(2 * position - 1))
        start += steps


def build_scheduler(spec: Schedule, optimizer: torch.optim.Optimizer, lr: float, epochs: int, steps_per_epoch: int,
                    stage_epochs: list[int] | None = None) -> torch.optim.lr_scheduler.LRScheduler:
    """A scheduler stepped once per batch; `stage_epochs` are StableKD's, which `stagewise` follows."""
    total = epochs * steps_per_epoch
    if spec.name == "stagewise":
        stage_steps = [e * steps_per_epoch for e in stage_epochs]
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: stagewise(step, stage_steps, spec.min_lr / lr))
    if spec.name == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total)
    if spec.name == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    warmup = round(spec.warmup_epochs * steps_per_epoch)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, total, warmup, spec.min_lr / lr))
