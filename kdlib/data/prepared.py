"""Prepared datasets on disk (data/<profile>/<name>/{train,test}.pt + meta.json) and their loaders."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset, TensorDataset

from kdlib.config import Augment
from kdlib.data.splits import Prepared, Split
from kdlib.atomic import atomic_torch_save, atomic_write_text
from kdlib.errors import KDError

FILES = ("train.pt", "test.pt", "meta.json")


def save_prepared(prepared: Prepared, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    train = prepared.train.images.float() / 255
    meta = {"classes": prepared.classes, "description": prepared.description,
            "num_train": len(prepared.train.labels), "num_test": len(prepared.test.labels),
            "image_size": prepared.train.images.shape[-1],
            # Normalisation statistics come from the training split only.
            "mean": train.mean(dim=(0, 2, 3)).tolist(), "std": train.std(dim=(0, 2, 3)).tolist()}
    for name, split in (("train.pt", prepared.train), ("test.pt", prepared.test)):
        atomic_torch_save({"images": split.images, "labels": split.labels}, folder / name)
    atomic_write_text(folder / "meta.json", json.dumps(meta, indent=1))


@dataclass
class DatasetFiles:
    train: Split
    test: Split
    meta: dict

    @property
    def num_classes(self) -> int:
        return len(self.meta["classes"])


def load_prepared(folder: Path) -> DatasetFiles:
    missing = [f for f in FILES if not (folder / f).is_file()]
    if missing:
        raise KDError(f"{folder}: prepared dataset is missing {', '.join(missing)}; "
                      f"run the prepare_{folder.name} stage first")
    splits = []
    for name in ("train.pt", "test.pt"):
        try:
            blob = torch.load(folder / name, weights_only=True)
            splits.append(Split(blob["images"], blob["labels"]))
        except Exception as e:  # any unpickling/zip error means the file is damaged
            raise KDError(f"{folder / name}: cannot be read ({e}); run the prepare_{folder.name} stage again") from None
    return DatasetFiles(*splits, json.loads((folder / "meta.json").read_text()))


def class_fraction(split: Split, fraction: float, seed: int) -> Split:
    """round(fraction x n) images of every class (at least one), drawn by `seed`, in their original order."""
    generator = torch.Generator().manual_seed(seed)
    keep = []
    for c in split.labels.unique(sorted=True):
        members = (split.labels == c).nonzero().flatten()
        count = max(1, round(fraction * len(members)))
        keep.append(members[torch.randperm(len(members), generator=generator)[:count]])
    index = torch.cat(keep).sort().values
    return Split(split.images[index], split.labels[index])


def normalize(images: torch.Tensor, meta: dict) -> torch.Tensor:
    """uint8 images (..., C, H, W) -> floats in [0, 1], standardised by the training split's mean and std."""
    mean = torch.tensor(meta["mean"]).view(-1, 1, 1)
    std = torch.tensor(meta["std"]).view(-1, 1, 1)
    return (images.float() / 255 - mean) / std


class AugmentedSet(Dataset):
    """Training images: torchvision's v2 augmentations per image around normalisation (see `Augment`)."""

    def __init__(self, split: Split, meta: dict, augment: Augment):
        from torchvision.transforms import v2  # imported here: it costs seconds, and only training needs it
        self.split, self.meta = split, meta
        before = []  # on uint8 images
        if augment.crop_padding:
            before.append(v2.RandomCrop(meta["image_size"], padding=augment.crop_padding))
        if augment.hflip:
            before.append(v2.RandomHorizontalFlip())
        if augment.autoaugment:
            before.append(v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10))
        if augment.color_jitter is not None:
            before.append(v2.ColorJitter(**augment.color_jitter.model_dump()))
        self.before = v2.Compose(before) if before else None
        erasing = augment.random_erasing
        self.after = v2.RandomErasing(p=erasing.p, scale=erasing.scale) if erasing is not None else None

    def __len__(self):
        return len(self.split.labels)

    def __getitem__(self, i):
        image = self.split.images[i]
        image = normalize(self.before(image) if self.before else image, self.meta)
        return (self.after(image) if self.after else image), self.split.labels[i]


def train_loader(files: DatasetFiles, augment: Augment, batch_size: int, seed: int, rank: int = 0,
                 replicas: int = 1) -> DataLoader:
    """Rank `rank`'s share of one epoch: the training images in the order `seed` shuffles them, dealt out over
    `replicas` processes, so that the ranks' batches of `batch_size` together make exactly the batches of size
    batch_size x replicas that one process would draw. (The last batch may repeat a few images so that every
    rank gets as many.) Augmentation draws from the global RNG: kdlib.data.stream gives it the stream's own."""
    images = AugmentedSet(files.train, files.meta, augment)
    order = DistributedSampler(images, num_replicas=replicas, rank=rank, shuffle=True, seed=seed)
    # The generator seeds the workers' augmentation, when there are workers.
    return DataLoader(images, batch_size=batch_size, sampler=order, drop_last=False, num_workers=augment.workers,
                      generator=torch.Generator().manual_seed(seed + rank))


def test_loader(files: DatasetFiles, batch_size: int, rank: int = 0, replicas: int = 1) -> DataLoader:
    """The test images in order (every `replicas`-th from `rank`: one rank's share)."""
    # No augmentation: normalise the whole split once instead of image by image.
    images = TensorDataset(normalize(files.test.images, files.meta), files.test.labels)
    share = images if replicas == 1 else Subset(images, range(rank, len(images), replicas))
    return DataLoader(share, batch_size=batch_size, shuffle=False)
