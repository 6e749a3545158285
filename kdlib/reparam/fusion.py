"""Fusion for deployment: pure functions on kernels, and `to_deploy`, which applies them to a whole model.

Arithmetic is done in float64, so the fused conv matches the branches to float32 rounding.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from kdlib.reparam.acb import ACBlock


def fold_bn(weight: torch.Tensor, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Conv (no bias) followed by BN in eval mode -> one conv's (weight, bias): W*gamma/sigma, beta - mu*gamma/sigma."""
    sigma = (bn.running_var.double() + bn.eps).sqrt()
    gamma = bn.weight.double() if bn.affine else torch.ones_like(sigma)
    beta = bn.bias.double() if bn.affine else torch.zeros_like(sigma)
    scale = gamma / sigma
    return weight.double() * scale.reshape(-1, 1, 1, 1), beta - bn.running_mean.double() * scale


def pad_to_square(kernel: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pad a 1xK or Kx1 (or KxK) kernel into the centre of a `size` x `size` one."""
    kh, kw = kernel.shape[-2:]
    dh, dw = (size - kh) // 2, (size - kw) // 2
    return F.pad(kernel, (dw, size - kw - dw, dh, size - kh - dh))


def fuse_branches(branches: list[tuple[torch.Tensor, torch.Tensor]], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum (weight, bias) pairs of parallel convs over the same input into one KxK (weight, bias)."""
    weight = sum(pad_to_square(w, size) for w, _ in branches)
    bias = sum(b for _, b in branches)
    return weight, bias


def fuse_acb(block: ACBlock) -> nn.Conv2d:
    """One conv with bias that computes what the ACBlock computes in eval mode."""
    square = block.square[0]
    weight, bias = fuse_branches([fold_bn(branch[0].weight, branch[1])
                                  for branch in (block.square, block.hor, block.ver)], block.kernel_size)
    conv = nn.Conv2d(square.in_channels, square.out_channels, block.kernel_size, square.stride, square.padding,
                     square.dilation, square.groups, bias=True).to(square.weight.device)
    with torch.no_grad():
        conv.weight.copy_(weight)
        conv.bias.copy_(bias)
    return conv


def to_deploy(model: nn.Module) -> nn.Module:
    """A new model with every ACBlock replaced by its fused conv; `model` is untouched. Idempotent."""
    deployed = copy.deepcopy(model).eval()
    for parent in list(deployed.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, ACBlock):
                setattr(parent, name, fuse_acb(child))
    return deployed
