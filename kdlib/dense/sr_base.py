"""What seed 002's super-resolution networks share: the mean shift, a 3x3 conv, the pixel-shuffle upsampler, the
base class, and the conv-net skeleton of EDSR and AttentionSRNet.

Every model maps RGB in [0, 1] to RGB at `scale` times the size, unclamped (the loss sees raw values, evaluation
clamps). `forward_features` also returns the deep features right before the upsampler, at the input's size, for
feature distillation; their channel count is the model's `feature_channels`.
"""
import torch
import torch.nn as nn

# DIV2K's RGB mean, subtracted before and added after every network (as EDSR and SwinIR do), so a network whose
# output branch starts near zero starts near a mean-coloured image rather than black.
RGB_MEAN = (0.4488, 0.4371, 0.4040)


def _conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, padding=1)


def _upsampler(channels: int, scale: int) -> nn.Sequential:
    """Sub-pixel up-sampling: conv + PixelShuffle(2) per factor 2 of the scale, or one conv + PixelShuffle(3)."""
    layers: list[nn.Module] = []
    if scale == 3:
        layers += [_conv3x3(channels, 9 * channels), nn.PixelShuffle(3)]
    elif scale >= 2 and scale & (scale - 1) == 0:
        for _ in range(scale.bit_length() - 1):
            layers += [_conv3x3(channels, 4 * channels), nn.PixelShuffle(2)]
    else:
        raise ValueError(f"scale must be 3 or a power of 2, got {scale}")
    return nn.Sequential(*layers)


class _SRNet(nn.Module):
    """The mean shift and `forward` shared by all models; subclasses define `forward_features`."""

    def __init__(self, scale: int, feature_channels: int):
        super().__init__()
        self.scale = scale
        self.feature_channels = feature_channels
        self.register_buffer("mean", torch.tensor(RGB_MEAN).view(1, 3, 1, 1), persistent=False)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[0]


class _ConvSRNet(_SRNet):
    """3x3 conv head, a body of blocks, a conv with a long residual, pixel-shuffle upsampler and a 3x3 conv out."""

    def __init__(self, scale: int, channels: int, blocks: list[nn.Module]):
        super().__init__(scale, channels)
        self.head = _conv3x3(3, channels)
        self.body = nn.Sequential(*blocks)
        self.conv_after_body = _conv3x3(channels, channels)
        self.upsample = _upsampler(channels, scale)
        self.conv_last = _conv3x3(channels, 3)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shallow = self.head(x - self.mean)
        features = self.conv_after_body(self.body(shallow)) + shallow
        return self.conv_last(self.upsample(features)) + self.mean, features
