"""Build a classification set from each source as uint8 tensors (N, 3, S, S) plus int64 labels.

`prepare` stores the result under data/<profile>/<name>/; training never touches the raw sources.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from kdlib.config import DatasetSpec
from kdlib.data.splits import Prepared, Split
from kdlib.errors import KDError
from kdlib.paths import DATA_RAW


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (N, C, H, W) -> uint8 (N, 3, size, size), antialiased bilinear; grey becomes RGB."""
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    if images.shape[-2:] != (size, size):
        images = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True,
                               align_corners=False).round().clamp(0, 255).to(torch.uint8)
    return images.contiguous()


# --- photo shapes: the embedded default ------------------------------------------------------------
# Textures are random crops of the photos that scikit-image and scikit-learn ship.
PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "motorcycle_left",
          "brick", "grass", "gravel", "camera", "moon", "coins", "page", "text", "china", "flower"]


def photo(name: str) -> np.ndarray:
    """One of PHOTOS as uint8 (H, W, 3); grey photos are repeated to RGB."""
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image
        img = load_sample_image(f"{name}.jpg")
    else:
        from skimage import data
        img = getattr(data, "stereo_motorcycle")()[0] if name == "motorcycle_left" else getattr(data, name)()
    img = np.array(img)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return img[..., :3]


def photo_crops(img: np.ndarray, n: int, cols: tuple[float, float], size: int,
                rng: np.random.Generator) -> torch.Tensor:
    """n random square crops (uint8 (n, 3, size, size)) from the columns cols (fractions of the width) of img."""
    h, w = img.shape[:2]
    x0, x1 = int(cols[0] * w), int(cols[1] * w)
    base = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)
    out = torch.empty(n, 3, size, size, dtype=torch.uint8)
    for i in range(n):
        side = int(rng.uniform(0.06, 0.2) * min(h, w))
        side = min(side, x1 - x0)
        top = rng.integers(0, h - side + 1)
        left = rng.integers(x0, x1 - side + 1)
        crop = base[:, top:top + side, left:left + side]
        if rng.random() < 0.5:
            crop = crop.flip(-1)
        crop = resize(crop[None], size)[0].float()
        # Brightness and contrast jitter so that mean colour alone does not give the class away.
        crop = (crop - crop.mean()) * rng.uniform(0.6, 1.4) + crop.mean() * rng.uniform(0.7, 1.3)
        out[i] = crop.round().clamp(0, 255).to(torch.uint8)
    return out


SHAPES = ["circle", "ring", "square", "triangle", "pentagon", "hexagon", "star", "cross", "ellipse", "half_disc"]


def _polygon(theta: torch.Tensor, sides: int) -> torch.Tensor:
    """Radius of a regular polygon's outline at angle theta, for circumradius 1."""
    sector = 2 * math.pi / sides
    return math.cos(math.pi / sides) / torch.cos(torch.remainder(theta, sector) - sector / 2)


def shape_masks(kinds: torch.Tensor, size: int, rng: np.random.Generator) -> torch.Tensor:
    """Boolean masks (N, size, size): shape `kinds[i]` at a random centre, radius and rotation."""
    n = len(kinds)
    radius = torch.from_numpy(rng.uniform(0.25, 0.45, n)).float()[:, None, None] * size
    centre = torch.from_numpy(rng.uniform(-0.12, 0.12, (n, 2))).float() * size + (size - 1) / 2
    angle = torch.from_numpy(rng.uniform(0, 2 * math.pi, n)).float()[:, None, None]
    ys, xs = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    dx, dy = xs - centre[:, 0, None, None], ys - centre[:, 1, None, None]
    x = (dx * torch.cos(angle) + dy * torch.sin(angle)) / radius  # shape-aligned coordinates, radius 1
    y = (-dx * torch.sin(angle) + dy * torch.cos(angle)) / radius
    r, theta = torch.sqrt(x ** 2 + y ** 2), torch.atan2(y, x)
    outlines = {
        "circle": r <= 1,
        "ring": (r <= 1) & (r >= 0.6),
        "square": r <= _polygon(theta, 4),
        "triangle": r <= _polygon(theta, 3),
        "pentagon": r <= _polygon(theta, 5),
        "hexagon": r <= _polygon(theta, 6),
        "star": r <= 0.45 + 0.55 * torch.abs(torch.cos(2.5 * theta)) ** 2,
        "cross": ((x.abs() <= 0.3) | (y.abs() <= 0.3)) & (x.abs() <= 1) & (y.abs() <= 1),
        "ellipse": x ** 2 + (y / 0.55) ** 2 <= 1,
        "half_disc": (r <= 1) & (y >= 0),
    }
    stacked = torch.stack([outlines[k] for k in SHAPES], dim=1)  # (N, classes, H, W)
    return stacked[torch.arange(n), kinds]


def photo_shapes(spec: DatasetSpec, seed: int = 0) -> Prepared:
    """Ten shapes, each filled with a crop of one photo and laid over a crop of another.

    Class = the outline; textures never identify it. Training textures come from the left 75% of
    every photo and test textures from the right 25%, so no test pixel is seen in training.
    """
    rng = np.random.default_rng(seed)
    photos = [photo(name) for name in PHOTOS]
    splits = []
    for cols, per_class in (((0.0, 0.75), spec.train_per_class), ((0.75, 1.0), spec.test_per_class)):
        n = per_class * len(SHAPES)
        kinds = torch.from_numpy(rng.permutation(np.repeat(np.arange(len(SHAPES)), per_class)))
        textures = []
        for _ in range(2):  # foreground, background
            picks = rng.integers(0, len(photos), n)
            layer = torch.empty(n, 3, spec.image_size, spec.image_size, dtype=torch.uint8)
            for p in range(len(photos)):
                idx = torch.from_numpy(np.flatnonzero(picks == p))
                layer[idx] = photo_crops(photos[p], len(idx), cols, spec.image_size, rng)
            textures.append(layer)
        masks = shape_masks(kinds, spec.image_size, rng)[:, None]
        splits.append(Split(torch.where(masks, textures[0], textures[1]), kinds.long()))
    return Prepared(splits[0], splits[1], SHAPES, "ten outlines filled with one photo crop over another "
                    "(scikit-image and scikit-learn photos; train textures from the left 75%, test textures "
                    "from the right 25% of each photo)")


# --- scikit-learn digits: the tiny test profile -------------------------------------------------------
def digits(spec: DatasetSpec, seed: int = 0) -> Prepared:
    from sklearn.datasets import load_digits
    bunch = load_digits()
    images = torch.from_numpy((bunch.images * (255 / 16)).round().astype(np.uint8))[:, None]
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    order = torch.from_numpy(np.random.default_rng(seed).permutation(len(labels)))
    n_test = len(labels) // 5
    test_idx, train_idx = order[:n_test], order[n_test:]
    images = resize(images, spec.image_size)
    return Prepared(Split(images[train_idx], labels[train_idx]), Split(images[test_idx], labels[test_idx]),
                    [str(c) for c in bunch.target_names], "scikit-learn digits (8x8 grey, upscaled), seeded 80/20 split")


# --- CIFAR-10 / CIFAR-100 through torchvision ----------------------------------------------------------
ARCHIVES = {"cifar10": "cifar-10-python.tar.gz", "cifar100": "cifar-100-python.tar.gz"}


def cifar(spec: DatasetSpec, seed: int = 0) -> Prepared:
    from torchvision import datasets
    root = Path(spec.path) if spec.path else DATA_RAW
    cls = datasets.CIFAR10 if spec.source == "cifar10" else datasets.CIFAR100
    archive = root / ARCHIVES[spec.source]
    try:
        train, test = (cls(root, train=t, download=True) for t in (True, False))
    except (OSError, RuntimeError, EOFError, ValueError) as e:  # URLError is an OSError; tarfile's errors too
        source = "https://www.cs.toronto.edu/~kriz/cifar.html"
        if archive.is_file():  # torchvision checks its MD5 and, offline, fails re-downloading it
            raise KDError(f"{archive}: not the complete {spec.source} archive (its MD5 differs: truncated or "
                          f"another file); replace it with the one from {source}") from None
        raise KDError(f"{spec.source}: could not download or read it ({' '.join(str(e).split())}). Offline, put "
                      f"{archive.name} (from {source}) into {root}/ and run the prepare stage again") from None

    def split(ds):
        images = torch.from_numpy(ds.data).permute(0, 3, 1, 2)
        return Split(resize(images, spec.image_size), torch.tensor(ds.targets, dtype=torch.int64))

    return Prepared(split(train), split(test), list(train.classes), f"{spec.source.upper()} via torchvision")


# --- any ImageFolder tree -------------------------------------------------------------------------------
def imagefolder(spec: DatasetSpec, seed: int = 0) -> Prepared:
    from torchvision import datasets
    from torchvision.transforms import v2
    root = Path(spec.path)
    test_dir = next((root / d for d in ("val", "test") if (root / d).is_dir()), None)
    if not (root / "train").is_dir() or test_dir is None:
        raise KDError(f"{root}: an ImageFolder dataset needs train/ and val/ (or test/) folders of class folders")
    to_tensor = v2.Compose([v2.PILToTensor(), v2.Resize((spec.image_size, spec.image_size), antialias=True)])

    def split(folder, classes):
        try:
            ds = datasets.ImageFolder(folder)
        except (FileNotFoundError, OSError) as e:  # no class folders, or a class folder without images
            raise KDError(f"{folder}: {' '.join(str(e).split())}") from None
        if classes is not None and ds.classes != classes:
            raise KDError(f"{folder}: class folders {ds.classes} differ from train/'s {classes}")
        images = torch.stack([to_tensor(read_rgb(Path(path))) for path, _ in ds.samples])
        return Split(images, torch.tensor(ds.targets, dtype=torch.int64)), ds.classes

    train, classes = split(root / "train", None)
    test, _ = split(test_dir, classes)
    return Prepared(train, test, classes, f"ImageFolder tree at {root}")


def read_rgb(path: Path):
    """An image file as an 8-bit RGB PIL image; 16-bit greys are scaled down (PIL's convert would clip them)."""
    from PIL import Image
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
                image = Image.fromarray((np.asarray(image, dtype=np.float64) / 257).round().clip(0, 255)
                                        .astype(np.uint8))
            return image.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:  # truncated, empty, not an image
        raise KDError(f"{path}: not a readable image ({' '.join(str(e).split()) or type(e).__name__}); "
                      "remove or replace it") from None


BUILDERS = {"photo_shapes": photo_shapes, "digits": digits, "cifar10": cifar, "cifar100": cifar,
            "imagefolder": imagefolder}


def build(spec: DatasetSpec, seed: int = 0) -> Prepared:
    return BUILDERS[spec.source](spec, seed)
