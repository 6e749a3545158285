"""Wrap a student (and optionally a frozen teacher) and return the student's logits and named losses.

The trainer sums the dict and logs every term, so a new method adds a term, not a new loop.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdlib.config import Distill
from kdlib.distill.losses import feature_l2, kd_kl, logits_mse
from kdlib.distill.schedules import alpha_at


class FeatureProjector(nn.Module):
    """Maps the student's last feature map onto the teacher's shape: a learned 1x1 conv for the channels,
    then average pooling (student map larger) or bilinear resizing (smaller) for the size. Training only."""

    def __init__(self, student_shape: tuple[int, int, int], teacher_shape: tuple[int, int, int]):
        super().__init__()
        self.conv = nn.Conv2d(student_shape[0], teacher_shape[0], 1) if student_shape[0] != teacher_shape[0] else None
        self.size = tuple(teacher_shape[1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv is not None:
            x = self.conv(x)
        if tuple(x.shape[-2:]) == self.size:
            return x
        if x.shape[-2] >= self.size[0] and x.shape[-1] >= self.size[1]:
            return F.adaptive_avg_pool2d(x, self.size)
        return F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)


class Distiller(nn.Module):
    def __init__(self, student: nn.Module, teacher: nn.Module | None = None, spec: Distill | None = None,
                 epochs: int = 1, input_shape: tuple[int, int, int] = (3, 32, 32), label_smoothing: float = 0.0):
        super().__init__()
        self.student = student
        self.spec = spec
        self.epochs = epochs
        self.label_smoothing = label_smoothing
        # Kept out of the module tree so the teacher is neither optimized nor saved with the student.
        self._teacher = [teacher.eval().requires_grad_(False)] if teacher is not None else []
        self.projector = None
        if teacher is not None and spec.method == "feature":
            s, t = student.stage_shapes(input_shape)[-1], teacher.stage_shapes(input_shape)[-1]
            if s != t:
                self.projector = FeatureProjector(s, t)

    @property
    def teacher(self) -> nn.Module | None:
        return self._teacher[0] if self._teacher else None

    def train(self, mode: bool = True):
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()  # frozen statistics: the teacher never runs in train mode
        return self

    def alpha(self, epoch: int) -> float:
        return alpha_at(self.spec, epoch, self.epochs) if self.teacher is not None else 0.0

    def hard_loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy against class indices, or against mixed label distributions (Mixup / CutMix)."""
        return F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)

    def forward_train(self, x: torch.Tensor, y: torch.Tensor, epoch: int = 0
                      ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """`y`: class indices (N,) or, for mixed batches, class distributions (N, classes). A mixed image's
        soft loss is against the teacher's output on that same mixed image."""
        if self.teacher is None:
            logits = self.student(x)
            return logits, {"ce": self.hard_loss(logits, y)}
        alpha = self.alpha(epoch)
        feature_kd = self.spec.method == "feature"
        target = None
        if alpha > 0:  # at alpha = 0 (labels only) the teacher's forward pass would be wasted
            # The teacher runs first, before the student's activations for backward fill the memory.
            with torch.no_grad():
                target = self.teacher.forward_features(x)[1][-1] if feature_kd else self.teacher(x)
        logits, features = self.student.forward_features(x) if feature_kd else (self.student(x), None)
        ce = self.hard_loss(logits, y)
        if target is None:
            return logits, {"ce": ce, "kd": torch.zeros((), device=ce.device)}
        if feature_kd:
            kd = feature_l2(features[-1] if self.projector is None else self.projector(features[-1]), target)
        elif self.spec.method == "logits_mse":
            kd = logits_mse(logits, target)
        else:
            kd = kd_kl(logits, target, self.spec.temperature)
        return logits, {"ce": (1 - alpha) * ce, "kd": alpha * kd}

    def to(self, *args, **kwargs):
        if self.teacher is not None:
            self._teacher[0] = self.teacher.to(*args, **kwargs)
        return super().to(*args, **kwargs)
