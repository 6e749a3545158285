"""Caffe's cifar10_quick with BN, and the deep variant with every conv doubled (seed 000)."""
from torch import nn

from kdlib.models.base import StagedNet, conv_bn, scale


def _cifar_quick(num_classes: int, width: float, deep: bool) -> StagedNet:
    widths = [scale(c, width) for c in (32, 32, 64)]
    pools = [nn.MaxPool2d(3, 2, 1), nn.AvgPool2d(3, 2, 1), nn.AvgPool2d(3, 2, 1)]
    stages, cin = [], 3
    for cout, pool in zip(widths, pools):
        convs = [conv_bn(cin, cout, 5)] + ([conv_bn(cout, cout, 5)] if deep else [])
        stages.append(nn.Sequential(*convs, pool))
        cin = cout
    hidden = scale(64, width)
    head = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(cin * 16, hidden),
                         nn.ReLU(inplace=True), nn.Linear(hidden, num_classes))
    return StagedNet(stages, head)


def cifar_quick(num_classes: int, width: float = 1.0) -> StagedNet:
    return _cifar_quick(num_classes, width, deep=False)


def cifar_quick_deep(num_classes: int, width: float = 1.0) -> StagedNet:
    return _cifar_quick(num_classes, width, deep=True)
