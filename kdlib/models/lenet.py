"""LeNet-5 with BN (ACNet's `lenet5bn`) and its deep variant with every conv doubled (seed 000)."""
from torch import nn

from kdlib.models.base import StagedNet, conv_bn, scale


def _lenet(num_classes: int, width: float, deep: bool) -> StagedNet:
    c1, c2 = scale(20, width), scale(50, width)

    def stage(cin, cout):
        # The deep variant adds a same-size 5x5 conv first, so spatial sizes match the plain LeNet.
        extra = [conv_bn(cin, cin, 5)] if deep else []
        return nn.Sequential(*extra, conv_bn(cin, cout, 5, padding=0), nn.MaxPool2d(2))

    head = nn.Sequential(nn.AdaptiveAvgPool2d(5), nn.Flatten(), nn.Linear(c2 * 25, scale(500, width)),
                         nn.ReLU(inplace=True), nn.Linear(scale(500, width), num_classes))
    return StagedNet([stage(3, c1), stage(c1, c2)], head)


def lenet5bn(num_classes: int, width: float = 1.0) -> StagedNet:
    return _lenet(num_classes, width, deep=False)


def lenet5bn_deep(num_classes: int, width: float = 1.0) -> StagedNet:
    return _lenet(num_classes, width, deep=True)
