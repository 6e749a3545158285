"""Data sources: the embedded shapes, ImageFolder trees, and CIFAR's offline message."""
import numpy as np
import pytest
import torch
from PIL import Image

from kdlib.config import DatasetSpec
from kdlib.data.sources import SHAPES, build, shape_masks
from kdlib.errors import KDError


def test_photo_shapes_is_balanced_and_split_by_photo_region():
    data = build(DatasetSpec(source="photo_shapes", train_per_class=3, test_per_class=2))
    assert data.train.images.shape == (30, 3, 32, 32) and data.train.images.dtype == torch.uint8
    assert torch.bincount(data.train.labels).tolist() == [3] * 10
    assert torch.bincount(data.test.labels).tolist() == [2] * 10
    assert data.classes == SHAPES


def test_shape_masks_have_the_expected_areas():
    rng = np.random.default_rng(0)
    kinds = torch.arange(len(SHAPES)).repeat_interleave(200)
    area = shape_masks(kinds, 64, rng).float().mean(dim=(1, 2)).view(len(SHAPES), 200).mean(1)
    by_name = dict(zip(SHAPES, area.tolist()))
    # Mean radius is 0.35 * 64 px, so a disc covers about pi * 0.35^2 = 0.385 of the image.
    assert by_name["circle"] == pytest.approx(np.pi * (0.35 ** 2 + 0.058 ** 2), rel=0.05)
    assert by_name["half_disc"] == pytest.approx(by_name["circle"] / 2, rel=0.05)
    assert by_name["ring"] == pytest.approx(by_name["circle"] * (1 - 0.6 ** 2), rel=0.05)
    assert by_name["triangle"] < by_name["square"] < by_name["pentagon"] < by_name["hexagon"] < by_name["circle"]


def test_imagefolder_tree(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("val", 2)):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(tmp_path / split / cls / f"{i}.png")
    data = build(DatasetSpec(source="imagefolder", path=str(tmp_path), image_size=16))
    assert data.classes == ["cat", "dog"]
    assert data.train.images.shape == (6, 3, 16, 16) and data.test.labels.tolist() == [0, 0, 1, 1]


def test_imagefolder_without_val_is_refused(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    with pytest.raises(KDError, match="needs train/ and val/ \\(or test/\\) folders"):
        build(DatasetSpec(source="imagefolder", path=str(tmp_path)))


def test_cifar_offline_says_where_to_put_the_archive(tmp_path, monkeypatch):
    from torchvision import datasets

    def unreachable(self):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(datasets.CIFAR10, "download", unreachable)  # the same on and off line
    with pytest.raises(KDError, match=f"Offline, put cifar-10-python.tar.gz .* into {tmp_path}/"):
        build(DatasetSpec(source="cifar10", path=str(tmp_path)))
