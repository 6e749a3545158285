"""Swin Transformers (Liu et al.) as StagedNets: torchvision's Swin-T and Swin-S, split at their four stages as
seed 003 decomposes them (depths 2, 2, 6, 2 and 2, 2, 18, 2).

torchvision's layers carry (N, H, W, C) tensors; each stage here takes and returns (N, C, H, W), so KD methods
and StableKD read its outputs like a CNN's. `swin_t`/`swin_s` are adapted to 32x32 inputs (patches of 2 pixels,
4x4 windows, the usual CIFAR setting: 16x16 tokens in the first stage); `swin_t_224`/`swin_s_224` are the
published ImageNet configurations (patches of 4, 7x7 windows) for 224x224 image folders, with torchvision's
ImageNet weights if `pretrained` (the classifier replaced unless it has 1000 classes).
"""
from __future__ import annotations

from torch import nn
from torchvision.models.swin_transformer import SwinTransformer
from torchvision.ops.misc import Permute

from kdlib.models.base import StagedNet, scale
from kdlib.models.torchvision_zoo import imagenet_model, no_width

TO_CHANNELS_LAST, TO_CHANNELS_FIRST = [0, 2, 3, 1], [0, 3, 1, 2]
HEADS = (3, 6, 12, 24)


def staged(net: SwinTransformer) -> StagedNet:
    """torchvision's SwinTransformer regrouped: stage i is (patch embedding or merging, then its layers)."""
    features = list(net.features)  # embedding, stage 1, merging, stage 2, merging, stage 3, merging, stage 4
    stages = [nn.Sequential(*features[:2], Permute(TO_CHANNELS_FIRST))]
    stages += [nn.Sequential(Permute(TO_CHANNELS_LAST), *features[i:i + 2], Permute(TO_CHANNELS_FIRST))
               for i in range(2, len(features), 2)]
    head = nn.Sequential(Permute(TO_CHANNELS_LAST), net.norm, Permute(TO_CHANNELS_FIRST), net.avgpool, net.flatten,
                         net.head)
    return StagedNet(stages, head)


def swin_32(num_classes: int, width: float, depths: list[int]) -> StagedNet:
    net = SwinTransformer(patch_size=[2, 2], embed_dim=scale(96, width, HEADS[0]), depths=depths,
                          num_heads=list(HEADS), window_size=[4, 4], stochastic_depth_prob=0.2,
                          num_classes=num_classes)
    return staged(net)


def swin_224(name: str, num_classes: int, width: float, pretrained: bool) -> StagedNet:
    no_width(name, width)
    net = imagenet_model(name, pretrained)
    if net.head.out_features != num_classes:
        net.head = nn.Linear(net.head.in_features, num_classes)
    return staged(net)


def swin_t(num_classes: int, width: float = 1.0) -> StagedNet:
    return swin_32(num_classes, width, [2, 2, 6, 2])


def swin_s(num_classes: int, width: float = 1.0) -> StagedNet:
    return swin_32(num_classes, width, [2, 2, 18, 2])


def swin_t_224(num_classes: int, width: float = 1.0, pretrained: bool = False) -> StagedNet:
    return swin_224("swin_t_224", num_classes, width, pretrained)


def swin_s_224(num_classes: int, width: float = 1.0, pretrained: bool = False) -> StagedNet:
    return swin_224("swin_s_224", num_classes, width, pretrained)
