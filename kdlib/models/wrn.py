"""Wide ResNets (Zagoruyko & Komodakis 2016), pre-activation blocks: wrn_16_2 and wrn_40_2."""
from torch import nn

from kdlib.models.base import StagedNet, pooled_linear_head, scale


class PreActBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.pre = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(inplace=True))
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False))
        self.shortcut = None if stride == 1 and cin == cout else nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        out = self.pre(x)
        skip = x if self.shortcut is None else self.shortcut(out)
        return self.body(out) + skip


def _wrn(depth: int, k: int, num_classes: int, width: float) -> StagedNet:
    blocks = (depth - 4) // 6
    cin = scale(16, width)
    stages = []
    for i, c in enumerate((16 * k, 32 * k, 64 * k)):
        cout = scale(c, width)
        layers = [nn.Conv2d(3, cin, 3, 1, 1, bias=False)] if i == 0 else []
        for b in range(blocks):
            layers.append(PreActBlock(cin, cout, 2 if (i > 0 and b == 0) else 1))
            cin = cout
        if i == 2:  # pre-activation nets end with BN-ReLU before pooling
            layers += [nn.BatchNorm2d(cin), nn.ReLU(inplace=True)]
        stages.append(nn.Sequential(*layers))
    return StagedNet(stages, pooled_linear_head(cin, num_classes))


def wrn_16_2(num_classes: int, width: float = 1.0) -> StagedNet:
    return _wrn(16, 2, num_classes, width)


def wrn_40_2(num_classes: int, width: float = 1.0) -> StagedNet:
    return _wrn(40, 2, num_classes, width)
