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


def test_shape_areas_match_their_closed_forms():
    # The same seed gives every shape the same centre, radius and rotation, so area ratios to the
    # circle are the textbook ones for a unit circumradius (clipping at the border averages out).
    n, size = 500, 128
    area = {k: shape_masks(torch.full((n,), i), size, np.random.default_rng(0)).float().mean().item()
            for i, k in enumerate(SHAPES)}
    polygon = lambda sides: sides / 2 * np.sin(2 * np.pi / sides) / np.pi  # noqa: E731
    expected = {"ring": 1 - 0.6 ** 2, "square": polygon(4), "triangle": polygon(3), "pentagon": polygon(5),
                "hexagon": polygon(6), "ellipse": 0.55, "half_disc": 0.5}
    for name, ratio in expected.items():
        assert area[name] / area["circle"] == pytest.approx(ratio, rel=0.02), name


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
