"""MobileNetV2 (Sandler et al. 2018) for 32x32 inputs: stride-1 stem and first stride-2 removed."""
from torch import nn

from kdlib.models.base import StagedNet, conv_bn, pooled_linear_head, scale

# (expansion t, channels c, repeats n, first stride s); stages group the settings by resolution.
SETTINGS = [[(1, 16, 1, 1), (6, 24, 2, 1)], [(6, 32, 3, 2)], [(6, 64, 4, 2), (6, 96, 3, 1)],
            [(6, 160, 3, 2), (6, 320, 1, 1)]]


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expansion: int):
        super().__init__()
        hidden = cin * expansion
        expand = [conv_bn(cin, hidden, 1, padding=0)] if expansion != 1 else []
        self.body = nn.Sequential(*expand, conv_bn(hidden, hidden, 3, stride, groups=hidden),
                                  conv_bn(hidden, cout, 1, padding=0, relu=False))
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


def mobilenetv2(num_classes: int, width: float = 1.0) -> StagedNet:
    cin = scale(32, width, 8)
    last = scale(1280, max(1.0, width), 8)
    stages = []
    for i, group in enumerate(SETTINGS):
        layers = [conv_bn(3, cin, 3)] if i == 0 else []
        for t, c, n, s in group:
            cout = scale(c, width, 8)
            for r in range(n):
                layers.append(InvertedResidual(cin, cout, s if r == 0 else 1, t))
                cin = cout
        if i == len(SETTINGS) - 1:
            layers.append(conv_bn(cin, last, 1, padding=0))
        stages.append(nn.Sequential(*layers))
    return StagedNet(stages, pooled_linear_head(last, num_classes))
