"""Wrap a student (and optionally a frozen teacher) and return the student's logits and named losses.

The trainer sums the dict and logs every term, so a new method adds a term, not a new loop. Each method lives in
its own module, named by its row of the table kdlib.distill.methods.METHODS and imported by that name (so a run
depends only on its own method's file); this class registers what the method builds and asks it for its terms.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdlib.config import Distill
from kdlib.distill.method import Method, method_class
from kdlib.distill.methods import METHODS
from kdlib.distill.schedules import alpha_at


class Distiller(nn.Module):
    def __init__(self, student: nn.Module, teacher: nn.Module | None = None, spec: Distill | None = None,
                 epochs: int = 1, input_shape: tuple[int, int, int] = (3, 32, 32), label_smoothing: float = 0.0,
                 stage: int = 0):
        """`stage`: the StableKD stage being trained (its blocks are the initial ones recomposed `stage` times)."""
        super().__init__()
        self.spec = spec
        self.epochs = epochs
        self.label_smoothing = label_smoothing
        # Kept out of the module tree so the teacher is neither optimized nor saved with the student.
        self._teacher = [teacher.eval().requires_grad_(False)] if teacher is not None else []
        self.projector = None
        # The method builds its modules (projector, student in training form) in a fixed order, which fixes the
        # random initialisation; registered here, projector before student, they are the Distiller's own.
        self.method: Method | None = None
        self.groups = None
        if teacher is not None:
            self.method = method_class(spec.method)(spec, student, teacher, input_shape, stage)
            self.projector = self.method.projector
            student = self.method.student
            self.groups = self.method.groups
        self.student = student

    @property
    def teacher(self) -> nn.Module | None:
        return self._teacher[0] if self._teacher else None

    def train(self, mode: bool = True):
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()  # frozen statistics: the teacher never runs in train mode
        return self

    def alpha(self, epoch: int) -> float:
        """The share of the KD term in (1 - alpha) CE + alpha KD; 1 for methods that add their terms to CE."""
        if self.teacher is None:
            return 0.0
        return alpha_at(self.spec, epoch, self.epochs) if METHODS[self.spec.method]["uses_alpha"] else 1.0

    def deployable(self) -> nn.Module:
        """The student as it is deployed (e.g. projectors of blockwise training folded away)."""
        return self.method.deployable(self.student) if self.method is not None else self.student

    def hard_loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy against class indices, or against mixed label distributions (Mixup / CutMix)."""
        return F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)

    def forward(self, x: torch.Tensor, y: torch.Tensor, epoch: int = 0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """forward_train, as a module call: what a DistributedDataParallel wrapper runs."""
        return self.forward_train(x, y, epoch)

    def forward_train(self, x: torch.Tensor, y: torch.Tensor, epoch: int = 0
                      ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """`y`: class indices (N,) or, for mixed batches, class distributions (N, classes). A mixed image's
        soft loss is against the teacher's output on that same mixed image."""
        if self.teacher is None:
            logits = self.student(x)
            return logits, {"ce": self.hard_loss(logits, y)}
        return self.method.terms(self, x, y, epoch)

    def to(self, *args, **kwargs):
        if self.teacher is not None:
            self._teacher[0] = self.teacher.to(*args, **kwargs)
        return super().to(*args, **kwargs)
