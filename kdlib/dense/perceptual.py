"""Perceptual loss: mean squared distance between VGG-16 features of two images (Johnson et al. 2016).

Nothing is downloaded: ImageNet weights are read from torchvision's file in the torch hub cache if it is there;
otherwise ("auto") a reproducibly seeded random VGG-16 is used, and `source` says so.
"""
import os
from urllib.parse import urlparse

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models import VGG16_Weights

from kdlib.errors import KDError

# torchvision's VGG-16 `features` layout: conv widths per stage, each stage followed by max pooling.
_VGG16_STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512))
# Index of each layer in torchvision's vgg16().features, so the ImageNet state dict's keys line up.
LAYERS = {"relu1_2": 3, "relu2_2": 8, "relu3_3": 15, "relu4_3": 22}
WEIGHT_SOURCES = ("auto", "imagenet", "random")
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_weights_path() -> str:
    """Where torchvision would cache VGG16_Weights.IMAGENET1K_V1: <torch hub dir>/checkpoints/<file name>."""
    file_name = os.path.basename(urlparse(VGG16_Weights.IMAGENET1K_V1.url).path)
    return os.path.join(torch.hub.get_dir(), "checkpoints", file_name)


def _vgg16_features() -> nn.Sequential:
    """torchvision's VGG-16 `features` up to relu4_3, initialised as torchvision does (He normal, zero bias)."""
    layers: list[nn.Module] = []
    in_channels = 3
    for stage, widths in enumerate(_VGG16_STAGES):
        if stage:
            layers.append(nn.MaxPool2d(2, 2))
        for width in widths:
            conv = nn.Conv2d(in_channels, width, 3, padding=1)
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
            layers += [conv, nn.ReLU(inplace=True)]
            in_channels = width
    return nn.Sequential(*layers)


class VGGPerceptual(nn.Module):
    """MSE between VGG-16 features at `layer` of two images in [0, 1]; frozen and always in eval mode."""

    def __init__(self, weights: str = "auto", layer: str = "relu2_2"):
        super().__init__()
        if weights not in WEIGHT_SOURCES:
            raise KDError(f"perceptual weights must be one of {', '.join(WEIGHT_SOURCES)}, got {weights!r}")
        if layer not in LAYERS:
            raise KDError(f"perceptual layer must be one of {', '.join(LAYERS)}, got {layer!r}")
        path = imagenet_weights_path()
        found = os.path.isfile(path)
        if weights == "imagenet" and not found:
            raise KDError(f"VGG-16 ImageNet weights not found: put torchvision's {os.path.basename(path)} "
                          f"({VGG16_Weights.IMAGENET1K_V1.url}) at {path}")
        # Seeded inside a forked RNG: the same random VGG on every construction, and the caller's RNG untouched.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            features = _vgg16_features()
        if weights == "imagenet" or (weights == "auto" and found):
            state = torch.load(path, map_location="cpu", weights_only=True)
            prefix = "features."
            features.load_state_dict({key[len(prefix):]: value for key, value in state.items()
                                      if key.startswith(prefix) and key[len(prefix):] in features.state_dict()})
            self.source = "VGG-16 ImageNet (torchvision IMAGENET1K_V1)"
        else:
            self.source = "VGG-16 random init (seed 0)" if found else \
                f"VGG-16 random init (seed 0; ImageNet weights not found at {path})"
        self.layer = layer
        self.features = features[:LAYERS[layer] + 1]
        self.features.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.train(False)

    def train(self, mode: bool = True) -> "VGGPerceptual":
        """Stays in eval mode whatever the caller asks, like a frozen teacher."""
        return super().train(False)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(self.features((a - self.mean) / self.std), self.features((b - self.mean) / self.std))
