"""CIFAR ResNets (He et al. 2016, option B shortcuts): resnet20/56 and the 4x-wide resnet8x4/32x4."""
from torch import nn

from kdlib.models.base import Residual, StagedNet, conv_bn, pooled_linear_head, scale


class BasicBlock(Residual):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__(nn.Sequential(conv_bn(cin, cout, 3, stride), conv_bn(cout, cout, 3, relu=False)),
                         nn.Identity() if stride == 1 and cin == cout
                         else conv_bn(cin, cout, 1, stride, padding=0, relu=False))


def _resnet(depth: int, stem: int, widths: tuple[int, ...], num_classes: int, width: float) -> StagedNet:
    blocks = (depth - 2) // 6
    cin = scale(stem, width)
    stages = []
    for i, c in enumerate(widths):
        cout = scale(c, width)
        layers = [conv_bn(3, cin, 3)] if i == 0 else []  # the stem belongs to the first stage
        for b in range(blocks):
            layers.append(BasicBlock(cin, cout, 2 if (i > 0 and b == 0) else 1))
            cin = cout
        stages.append(nn.Sequential(*layers))
    return StagedNet(stages, pooled_linear_head(cin, num_classes))


def resnet20(num_classes: int, width: float = 1.0) -> StagedNet:
    return _resnet(20, 16, (16, 32, 64), num_classes, width)


def resnet56(num_classes: int, width: float = 1.0) -> StagedNet:
    return _resnet(56, 16, (16, 32, 64), num_classes, width)


def resnet8x4(num_classes: int, width: float = 1.0) -> StagedNet:
    return _resnet(8, 32, (64, 128, 256), num_classes, width)


def resnet32x4(num_classes: int, width: float = 1.0) -> StagedNet:
    return _resnet(32, 32, (64, 128, 256), num_classes, width)
