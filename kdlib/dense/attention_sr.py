"""AttentionSRNet, seed 002's compact super-resolution student: residual blocks with channel attention."""
import torch
import torch.nn as nn

from kdlib.dense.sr_base import _conv3x3, _ConvSRNet


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation: global average pool, 1x1 conv down (reduction 4, at least 4), ReLU, 1x1 conv up,
    sigmoid; the result rescales each channel."""

    def __init__(self, channels: int, reduction: int = 4, min_hidden: int = 4):
        super().__init__()
        hidden = max(min_hidden, channels // reduction)
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True),
                                  nn.Conv2d(hidden, channels, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class AttentionBlock(nn.Module):
    """conv3x3-ReLU-conv3x3, channel attention, residual connection."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(_conv3x3(channels, channels), nn.ReLU(inplace=True), _conv3x3(channels, channels),
                                  ChannelAttention(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class AttentionSRNet(_ConvSRNet):
    """Seed 002's compact student (AttentionStudentSRNet): 12 channel-attention residual blocks, few channels."""

    def __init__(self, *, scale: int = 4, channels: int = 32, blocks: int = 12):
        super().__init__(scale, channels, [AttentionBlock(channels) for _ in range(blocks)])
