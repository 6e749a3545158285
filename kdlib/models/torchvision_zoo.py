"""torchvision's ImageNet architectures by name, adapted to 32x32 inputs as seeds 001 and 002 describe:
a 3x3 stride-1 first conv and no max-pool. They are wrapped as StagedNets (stages by resolution, then the
pooled classifier), so distillation treats them like every registry model.

`pretrained` loads torchvision's published ImageNet weights (downloaded on first use into torch's cache):
every layer keeps them except the classifier, sized for the dataset, and ResNet's first conv, whose 7x7
kernel becomes a fresh 3x3 one. EfficientNetV2's first conv is 3x3 already and keeps its weights.
"""
from __future__ import annotations

import torch
from torch import nn

from kdlib.errors import KDError
from kdlib.models.base import StagedNet

TORCHVISION_NAMES = {"resnet18": "resnet18", "resnet34": "resnet34", "resnet101": "resnet101",
                     "efficientnetv2_s": "efficientnet_v2_s", "efficientnetv2_l": "efficientnet_v2_l",
                     "swin_t_224": "swin_t", "swin_s_224": "swin_s"}


def imagenet_model(name: str, pretrained: bool) -> nn.Module:
    """torchvision's model for a registry name, with its published ImageNet weights if `pretrained`."""
    import torchvision.models as tvm
    tv_name = TORCHVISION_NAMES[name]
    if not pretrained:
        return tvm.get_model(tv_name, weights=None)
    weights = tvm.get_model_weights(tv_name).DEFAULT
    try:
        return tvm.get_model(tv_name, weights=weights)
    except OSError as e:  # URLError and friends: no network, or a proxy in the way
        raise KDError(f"model '{name}': pretrained weights {weights} cannot be downloaded ({e}); go online once "
                      "(they are cached in ~/.cache/torch), or set 'pretrained: false'") from None


def no_width(name: str, width: float) -> None:
    if width != 1.0:
        raise KDError(f"model '{name}' has a fixed width; set 'width: 1.0' (got {width})")


def _resnet(name: str, num_classes: int, width: float, pretrained: bool) -> StagedNet:
    no_width(name, width)
    net = imagenet_model(name, pretrained)
    stem = nn.Conv2d(3, net.conv1.out_channels, 3, 1, 1, bias=False)
    stages = [nn.Sequential(stem, net.bn1, net.relu, net.layer1), net.layer2, net.layer3, net.layer4]
    head = nn.Sequential(net.avgpool, nn.Flatten(), nn.Linear(net.fc.in_features, num_classes))
    return StagedNet(stages, head)


def _efficientnet(name: str, num_classes: int, width: float, pretrained: bool) -> StagedNet:
    no_width(name, width)
    net = imagenet_model(name, pretrained)
    net.features[0][0].stride = (1, 1)  # the 3x3 stem keeps its (pretrained) kernel, at stride 1
    stages = [nn.Sequential(*group) for group in _by_resolution(net.features)]
    classifier = nn.Sequential(net.classifier[0], nn.Linear(net.classifier[1].in_features, num_classes))
    return StagedNet(stages, nn.Sequential(net.avgpool, nn.Flatten(), classifier))


def resnet18(num_classes: int, width: float = 1.0, pretrained: bool = False) -> StagedNet:
    return _resnet("resnet18", num_classes, width, pretrained)


def resnet34(num_classes: int, width: float = 1.0, pretrained: bool = False) -> StagedNet:
    return _resnet("resnet34", num_classes, width, pretrained)


def resnet101(num_classes: int, width: float = 1.0, pretrained: bool = False) -> StagedNet:
    return _resnet("resnet101", num_classes, width, pretrained)


def efficientnetv2_s(num_classes: int, width: float = 1.0, pretrained: bool = False) -> StagedNet:
    return _efficientnet("efficientnetv2_s", num_classes, width, pretrained)


def efficientnetv2_l(num_classes: int, width: float = 1.0, pretrained: bool = False) -> StagedNet:
    return _efficientnet("efficientnetv2_l", num_classes, width, pretrained)


@torch.no_grad()
def _by_resolution(blocks: nn.Sequential) -> list[list[nn.Module]]:
    """Consecutive blocks grouped by the resolution they output (32, 16, 8, ... for 32x32 inputs)."""
    was_training = blocks.training
    blocks.eval()
    groups, x, size = [], torch.zeros(1, 3, 32, 32), None
    for block in blocks:
        x = block(x)
        if x.shape[-1] != size:
            groups.append([])
            size = x.shape[-1]
        groups[-1].append(block)
    blocks.train(was_training)
    return groups
