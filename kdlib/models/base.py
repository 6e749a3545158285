"""The interface every model shares: ordered stages, a head, and the features between them.

KD methods read `forward_features`; StableKD splits a model along `stages`; ACB conversion swaps
the convs inside. No method needs to know which family a model belongs to.
"""
import torch
from torch import nn


class Residual(nn.Module):
    """relu(body(x) + shortcut(x)). Blockwise KD (kdlib.distill.blockwise) folds a projector into both branches."""

    def __init__(self, body: nn.Module, shortcut: nn.Module):
        super().__init__()
        self.body, self.shortcut = body, shortcut
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class StagedNet(nn.Module):
    def __init__(self, stages: list[nn.Module], head: nn.Module):
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)
        return self.head(x)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits and the output of every stage (the last one is the last conv feature map)."""
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return self.head(x), features

    @torch.no_grad()
    def stage_shapes(self, input_shape=(3, 32, 32)) -> list[tuple[int, ...]]:
        """Per-stage output shape (C, H, W) for one input of `input_shape`."""
        was_training = self.training
        self.eval()
        _, features = self.forward_features(torch.zeros(1, *input_shape, device=next(self.parameters()).device))
        self.train(was_training)
        return [tuple(f.shape[1:]) for f in features]


def scale(channels: int, width: float, divisor: int = 1) -> int:
    """Channels after a width multiplier, rounded to a multiple of `divisor` (at least one)."""
    c = max(divisor, int(channels * width + divisor / 2) // divisor * divisor)
    return c if divisor == 1 or c >= 0.9 * channels * width else c + divisor


def conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, padding: int | None = None,
            groups: int = 1, relu: bool = True) -> nn.Sequential:
    """Conv (no bias) + BN (+ ReLU): the unit that ACB conversion and BN folding work on."""
    layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2 if padding is None else padding,
                        groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def pooled_linear_head(channels: int, num_classes: int) -> nn.Sequential:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))
