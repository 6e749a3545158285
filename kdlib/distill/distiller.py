"""Wrap a student (and optionally a frozen teacher) and return the student's logits and named losses.

The trainer sums the dict and logs every term, so a new method adds a term, not a new loop.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdlib.config import Distill
from kdlib.distill.losses import kd_kl


class Distiller(nn.Module):
    def __init__(self, student: nn.Module, teacher: nn.Module | None = None, spec: Distill | None = None):
        super().__init__()
        self.student = student
        self.spec = spec
        # Kept out of the module tree so the teacher is neither optimized nor saved with the student.
        self._teacher = [teacher.eval().requires_grad_(False)] if teacher is not None else []

    @property
    def teacher(self) -> nn.Module | None:
        return self._teacher[0] if self._teacher else None

    def train(self, mode: bool = True):
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()  # frozen statistics: the teacher never runs in train mode
        return self

    def forward_train(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits = self.student(x)
        ce = F.cross_entropy(logits, y)
        if self.teacher is None:
            return logits, {"ce": ce}
        with torch.no_grad():
            teacher_logits = self.teacher(x)
        alpha = self.spec.alpha
        return logits, {"ce": (1 - alpha) * ce,
                        "kd": alpha * kd_kl(logits, teacher_logits, self.spec.temperature)}

    def to(self, *args, **kwargs):
        if self.teacher is not None:
            self._teacher[0] = self.teacher.to(*args, **kwargs)
        return super().to(*args, **kwargs)
