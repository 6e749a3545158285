"""EDSR (Lim et al. 2017), a super-resolution teacher option: plain residual conv blocks."""
import torch
import torch.nn as nn

from kdlib.dense.sr_base import _conv3x3, _ConvSRNet


class ResidualBlock(nn.Module):
    """EDSR's block: conv-ReLU-conv without batch norm, scaled by 0.1 before the residual addition."""

    def __init__(self, channels: int, res_scale: float = 0.1):
        super().__init__()
        self.body = nn.Sequential(_conv3x3(channels, channels), nn.ReLU(inplace=True), _conv3x3(channels, channels))
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res_scale * self.body(x)


class EDSR(_ConvSRNet):
    """EDSR (Lim et al. 2017); the defaults are its baseline size (64 channels, 16 blocks)."""

    def __init__(self, *, scale: int = 4, channels: int = 64, blocks: int = 16):
        super().__init__(scale, channels, [ResidualBlock(channels) for _ in range(blocks)])
