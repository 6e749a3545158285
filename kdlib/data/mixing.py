"""Batch mixing (seed 001): Mixup or CutMix, chosen 50/50 per batch, by torchvision's v2 transforms.

The result's labels are class distributions: lambda on the image's own class and 1 - lambda on its
partner's, where CutMix's lambda is the share of the image left unpasted.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from kdlib.config import Mix


def batch_mixer(mix: Mix, num_classes: int) -> Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    from torchvision.transforms import v2
    return v2.RandomChoice([v2.MixUp(alpha=mix.mixup_alpha, num_classes=num_classes),
                            v2.CutMix(alpha=mix.cutmix_alpha, num_classes=num_classes)])
