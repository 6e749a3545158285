"""Wrap a student (and optionally a frozen teacher) and return the student's logits and named losses.

The trainer sums the dict and logs every term, so a new method adds a term, not a new loop. Each method's
loss lives in its own module (losses, at, dkd, stablekd); this class only routes the features to it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdlib.config import Distill
from kdlib.distill.at import at_loss
from kdlib.distill.dkd import TARGET_WEIGHT, dkd_terms, dkd_warmup
from kdlib.distill.losses import feature_l2, kd_kl, logits_mse
from kdlib.distill.schedules import alpha_at
from kdlib.distill.stablekd import fold_projectors, groups_at, student_in_teacher_widths
from kdlib.errors import KDError

BLOCKWISE = ("kd_mse", "stablekd")


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
        method = spec.method if teacher is not None else None
        if method == "feature":
            s, t = student.stage_shapes(input_shape)[-1], teacher.stage_shapes(input_shape)[-1]
            if s != t:
                self.projector = FeatureProjector(s, t)
        if method == "at":
            s, t = student.stage_shapes(input_shape), teacher.stage_shapes(input_shape)
            if [x[1:] for x in s] != [x[1:] for x in t]:
                raise KDError(f"attention transfer pairs stage with stage at equal feature sizes; the student's "
                              f"are {[x[1:] for x in s]}, the teacher's {[x[1:] for x in t]}")
        # Blockwise methods train the student in the teacher's widths (with projectors where they differ).
        self.student = student_in_teacher_widths(student, teacher, input_shape) if method in BLOCKWISE else student
        self.groups = None
        if method in BLOCKWISE:
            stages = len(self.student.stages)
            self.groups = ([[i] for i in range(stages + 1)] if method == "kd_mse"
                           else groups_at(stages, spec.blocks or stages + 1, stage))

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
        return alpha_at(self.spec, epoch, self.epochs) if self.spec.method in ("logits", "logits_mse", "feature") else 1.0

    def deployable(self) -> nn.Module:
        """The student as it is deployed: projectors of blockwise training folded away."""
        return fold_projectors(self.student) if self.groups is not None else self.student

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
        if self.groups is not None:
            return self.blockwise(x, y)
        if self.spec.method in ("at", "dkd"):
            return self.with_teacher_terms(x, y, epoch)
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

    def with_teacher_terms(self, x: torch.Tensor, y: torch.Tensor, epoch: int
                           ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """AT and DKD: cross-entropy plus the method's terms (DKD's need class indices, not mixed labels)."""
        with torch.no_grad():
            t_logits, t_features = self.teacher.forward_features(x)
        logits, features = self.student.forward_features(x)
        losses = {"ce": self.hard_loss(logits, y)}
        if self.spec.method == "at":
            losses["at"] = self.spec.beta * at_loss(features, t_features)
        else:
            tckd, nckd = dkd_terms(logits, t_logits, y, self.spec.temperature)
            warm = dkd_warmup(epoch, self.epochs)
            losses |= {"tckd": warm * TARGET_WEIGHT * tckd, "nckd": warm * self.spec.beta * nckd}
        return logits, losses

    def blockwise(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Seed 003's Eq. 8, CE + lambda KL + the MSE of every block but the last against the teacher's output
        of the same atomic block (term mse_b<i>, i its last atomic block). stablekd feeds each block the
        teacher's output of the block before it; kd_mse chains the student's own blocks end to end."""
        with torch.no_grad():
            t_logits, t_features = self.teacher.forward_features(x)
        blocks = [*self.student.stages, self.student.head]
        teacher_inputs, teacher_outputs = [x, *t_features], [*t_features, t_logits]
        decomposed = self.spec.method == "stablekd"
        losses, h = {}, x
        for group in self.groups:
            if decomposed:
                h = teacher_inputs[group[0]]
            for i in group:
                h = blocks[i](h)
            if group[-1] < len(blocks) - 1:
                losses[f"mse_b{group[-1]}"] = F.mse_loss(h, teacher_outputs[group[-1]])
        kl = self.spec.kl_weight * kd_kl(h, t_logits, self.spec.temperature)
        return h, {"ce": self.hard_loss(h, y), "kd": kl, **losses}

    def to(self, *args, **kwargs):
        if self.teacher is not None:
            self._teacher[0] = self.teacher.to(*args, **kwargs)
        return super().to(*args, **kwargs)
