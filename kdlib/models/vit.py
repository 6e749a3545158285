"""Vision Transformers (Dosovitskiy et al.) as StagedNets: seed 003's ViT-T and its depth-8 student on 32x32.

Seed 003 names a student "ViT-T/8", a network of depth 8 derived from the ViT-T/16 teacher (12 layers), and
spreads the attention layers evenly over StableKD's first four blocks: here the four stages. Between stages
the tokens travel as a (N, C, H, W) map, so every KD method reads a transformer's stage outputs like a CNN's.
At 32x32 a patch is 4 pixels (8x8 tokens), and the classifier reads the mean token (no class token), so every
stage output is a full map. The transformer layers are timm's.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block
from torch import nn

from kdlib.models.base import StagedNet, scale

STAGES = 4
CHANNELS, HEADS = 192, 3  # ViT-T: 192 channels, 3 heads, MLP ratio 4
PATCH, IMAGE_SIZE = 4, 32  # 8x8 tokens; other input sizes resize the position map


class PatchEmbedding(nn.Module):
    """Patches to a (N, C, H/p, W/p) map plus a learned position map (resized for other input sizes)."""

    def __init__(self, channels: int, patch: int, grid: int):
        super().__init__()
        self.proj = nn.Conv2d(3, channels, patch, patch)
        self.position = nn.Parameter(torch.zeros(1, channels, grid, grid))
        nn.init.trunc_normal_(self.position, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        position = self.position
        if position.shape[-2:] != x.shape[-2:]:
            position = F.interpolate(position, size=x.shape[-2:], mode="bicubic", align_corners=False)
        return x + position


class TokenBlocks(nn.Module):
    """Transformer layers over the H*W tokens of a (N, C, H, W) map; returns the map."""

    def __init__(self, layers: list[nn.Module]):
        super().__init__()
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        x = self.layers(x.flatten(2).transpose(1, 2))
        return x.transpose(1, 2).reshape(n, c, h, w)


def vit(num_classes: int, width: float, depth: int) -> StagedNet:
    """`depth` layers in four even stages (earlier stages take the remainder); `width` scales the channels."""
    channels = scale(CHANNELS, width, HEADS)
    per_stage = [depth // STAGES + (i < depth % STAGES) for i in range(STAGES)]
    layers = [[Block(channels, HEADS, mlp_ratio=4.0, qkv_bias=True) for _ in range(n)] for n in per_stage]
    stages = [nn.Sequential(PatchEmbedding(channels, PATCH, IMAGE_SIZE // PATCH), TokenBlocks(layers[0])),
              *(TokenBlocks(group) for group in layers[1:])]
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.LayerNorm(channels), nn.Linear(channels, num_classes))
    return StagedNet(stages, head)


def vit_t(num_classes: int, width: float = 1.0) -> StagedNet:
    """Seed 003's ViT-T/16 teacher: ViT-Tiny, 12 layers."""
    return vit(num_classes, width, depth=12)


def vit_t_d8(num_classes: int, width: float = 1.0) -> StagedNet:
    """Seed 003's ViT-T/8 student: ViT-Tiny cut to 8 layers."""
    return vit(num_classes, width, depth=8)
