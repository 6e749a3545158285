"""Asymmetric Convolution Blocks (Ding et al., ACNet 2019): a KxK conv plus 1xK and Kx1 convs, each with
its own BN, outputs summed. `to_acb` swaps every eligible conv of a model for one.
"""
from __future__ import annotations

import torch
from torch import nn


def eligible(conv: nn.Module) -> bool:
    """A square, odd, larger-than-1 kernel with numeric zero padding: the 1xK and Kx1 kernels fit its centre."""
    if type(conv) is not nn.Conv2d:
        return False
    k = conv.kernel_size
    return (k[0] == k[1] and k[0] > 1 and k[0] % 2 == 1 and not isinstance(conv.padding, str)
            and conv.padding_mode == "zeros")


def _conv_bn(conv: nn.Conv2d, kernel, padding, bn: nn.BatchNorm2d | None) -> nn.Sequential:
    settings = {"eps": bn.eps, "momentum": bn.momentum} if bn is not None else {}
    return nn.Sequential(nn.Conv2d(conv.in_channels, conv.out_channels, kernel, conv.stride, padding,
                                   conv.dilation, conv.groups, bias=False),
                         nn.BatchNorm2d(conv.out_channels, **settings))


class ACBlock(nn.Module):
    """Training-time replacement of a KxK conv (+ its BN): square, horizontal and vertical branches.

    The 1xK kernel must see the input rows the KxK kernel's centre row sees. That needs row padding
    p - d*(K//2); when this is negative (e.g. LeNet's unpadded 5x5), the rows are cropped instead.
    """

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d | None = None):
        """`bn`: the BN that followed the conv, whose eps and momentum the branch BNs take."""
        super().__init__()
        k = conv.kernel_size[0]
        (ph, pw), (dh, dw) = conv.padding, conv.dilation
        self.kernel_size = k
        self.square = _conv_bn(conv, (k, k), (ph, pw), bn)
        reach_h, reach_w = dh * (k // 2), dw * (k // 2)
        self.hor = _conv_bn(conv, (1, k), (max(0, ph - reach_h), pw), bn)
        self.ver = _conv_bn(conv, (k, 1), (ph, max(0, pw - reach_w)), bn)
        self.crop_rows, self.crop_cols = max(0, reach_h - ph), max(0, reach_w - pw)
        # Each branch's BN starts at gamma = 1/3, so the block's initial output has the scale of the
        # single conv-BN it replaces (ACNet's `gamma_init` option); otherwise it starts three times larger.
        for branch in (self.square, self.hor, self.ver):
            nn.init.constant_(branch[1].weight, 1 / 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        rows, cols = self.crop_rows, self.crop_cols
        return (self.square(x) + self.hor(x[..., rows:h - rows, :])
                + self.ver(x[..., :, cols:w - cols]))


def to_acb(model: nn.Module) -> nn.Module:
    """Replace, in place, every eligible conv by an ACBlock; the BN right after it becomes part of the block.

    A conv followed by its BN (the usual conv-BN unit) keeps its position and the BN's slot becomes an
    Identity, so the layers after it keep their names. A conv with no BN after it gets the block's BNs.
    """
    inside = {id(m) for block in model.modules() if isinstance(block, ACBlock) for m in block.modules()}
    for parent in [m for m in model.modules() if id(m) not in inside]:  # converting twice changes nothing
        children = list(parent.named_children())
        for i, (name, child) in enumerate(children):
            if not eligible(child):
                continue
            after = children[i + 1] if i + 1 < len(children) else None
            bn = None
            if (isinstance(parent, nn.Sequential) and after is not None and isinstance(after[1], nn.BatchNorm2d)
                    and after[1].num_features == child.out_channels):
                bn = after[1]
                setattr(parent, after[0], nn.Identity())
            setattr(parent, name, ACBlock(child, bn))
    return model
