"""Feature KD (seed 000): L2 between the last conv feature maps, through a learned projector if shapes differ."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdlib.distill.losses import feature_l2
from kdlib.distill.method import AlphaWeighted


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


class Method(AlphaWeighted):
    def __init__(self, spec, student, teacher, input_shape, stage=0):
        super().__init__(spec, student, teacher, input_shape, stage)
        s, t = student.stage_shapes(input_shape)[-1], teacher.stage_shapes(input_shape)[-1]
        if s != t:
            self.projector = FeatureProjector(s, t)

    def teacher_target(self, teacher, x):
        return teacher.forward_features(x)[1][-1]

    def student_output(self, student, x):
        logits, features = student.forward_features(x)
        return logits, features[-1]

    def kd(self, d, features, target):
        return feature_l2(features if d.projector is None else d.projector(features), target)
