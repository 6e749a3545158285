"""CIFAR VGG-16 with BN, and `vgg_shallow`: one conv per resolution, five in all (seed 000)."""
from torch import nn

from kdlib.models.base import StagedNet, conv_bn, pooled_linear_head, scale

# Channels of the convs at each resolution; every stage ends in a 2x2 max-pool.
VGG16 = [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]]
VGG_SHALLOW = [[64], [128], [256], [512], [512]]


def _vgg(plan, num_classes: int, width: float) -> StagedNet:
    stages, cin = [], 3
    for convs in plan:
        layers = []
        for c in convs:
            layers.append(conv_bn(cin, scale(c, width), 3))
            cin = scale(c, width)
        stages.append(nn.Sequential(*layers, nn.MaxPool2d(2)))
    return StagedNet(stages, pooled_linear_head(cin, num_classes))


def vgg16(num_classes: int, width: float = 1.0) -> StagedNet:
    return _vgg(VGG16, num_classes, width)


def vgg_shallow(num_classes: int, width: float = 1.0) -> StagedNet:
    return _vgg(VGG_SHALLOW, num_classes, width)
