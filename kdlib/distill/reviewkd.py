"""Knowledge review (Chen et al. 2021): each teacher stage is matched by a fusion of the student's stage at that
depth and every deeper one (ReviewKD's attention-based fusion, ABF), under the hierarchical context loss (HCL).

From the deepest stage up, an ABF maps the student's feature to `MID_CHANNELS`, blends it with the fused result
of the stage below (resized to its size) by two sigmoid attention maps, and maps the blend to the teacher's
channels with a 3x3 conv. HCL compares each output with the teacher's stage output at full size and after
average pooling to 4x4, 2x2 and 1x1, each level weighing half the one before, normalised by the weights' sum.
The ABFs are trained with the student and never deployed.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdlib.distill.method import AddedTerms, paired_stage_shapes
from kdlib.distill.schedules import warmup

MID_CHANNELS = 64  # ReviewKD's width of the fused features on CIFAR
PYRAMID = (4, 2, 1)  # HCL's pooled levels, each weighing half the one before


class AttentionFusion(nn.Module):
    """One ABF: (student feature, fused deeper result or None) -> (output in the teacher's channels, fused result)."""

    def __init__(self, in_channels: int, out_channels: int, fuse: bool):
        super().__init__()
        self.reduce = nn.Sequential(nn.Conv2d(in_channels, MID_CHANNELS, 1, bias=False), nn.BatchNorm2d(MID_CHANNELS))
        self.attention = nn.Sequential(nn.Conv2d(2 * MID_CHANNELS, 2, 1), nn.Sigmoid()) if fuse else None
        self.out = nn.Sequential(nn.Conv2d(MID_CHANNELS, out_channels, 3, padding=1, bias=False),
                                 nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor, deeper: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.reduce(x)
        if self.attention is not None:
            deeper = F.interpolate(deeper, size=x.shape[-2:], mode="nearest")
            weights = self.attention(torch.cat([x, deeper], dim=1))
            x = x * weights[:, :1] + deeper * weights[:, 1:]
        return self.out(x), x


class Review(nn.Module):
    """The ABFs of every student stage; maps the student's stage features to one output per teacher stage."""

    def __init__(self, student_channels: list[int], teacher_channels: list[int]):
        super().__init__()
        last = len(student_channels) - 1
        self.fusions = nn.ModuleList(AttentionFusion(s, t, fuse=i < last)
                                     for i, (s, t) in enumerate(zip(student_channels, teacher_channels)))

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        outputs, fused = [None] * len(features), None
        for i in reversed(range(len(features))):
            outputs[i], fused = self.fusions[i](features[i], fused)
        return outputs


def hcl(student_features: list[torch.Tensor], teacher_features: list[torch.Tensor]) -> torch.Tensor:
    """The hierarchical context loss summed over stages."""
    total = 0
    for s, t in zip(student_features, teacher_features, strict=True):
        loss, weight, weights = F.mse_loss(s, t), 1.0, 1.0
        for size in PYRAMID:
            if size >= s.shape[-1]:
                continue
            weight /= 2
            loss = loss + weight * F.mse_loss(F.adaptive_avg_pool2d(s, size), F.adaptive_avg_pool2d(t, size))
            weights += weight
        total = total + loss / weights
    return total


class Method(AddedTerms):
    """CE + warm-up * beta * HCL (beta: ReviewKD's CIFAR weight, 1; the warm-up as DKD's)."""

    def __init__(self, spec, student, teacher, input_shape, stage=0):
        super().__init__(spec, student, teacher, input_shape, stage)
        s, t = paired_stage_shapes(spec.method, student, teacher, input_shape)
        self.projector = Review([x[0] for x in s], [x[0] for x in t])

    def added(self, d, logits, features, t_logits, t_features, y, epoch):
        return {"review": warmup(epoch, d.epochs) * self.spec.beta * hcl(d.projector(features), t_features)}
