"""A dataset in memory: uint8 images and labels per split, as a source builds it and a stage loads it."""
from dataclasses import dataclass

import torch


@dataclass
class Split:
    images: torch.Tensor  # uint8 (N, 3, S, S)
    labels: torch.Tensor  # int64 (N,)


@dataclass
class Prepared:
    train: Split
    test: Split
    classes: list[str]
    description: str
