"""Seed 002's edge-detection data: procedural photo-textured shape scenes with exact edges, and BSDS500.

Both return uint8 images (N, 3, S, S) and boolean edge maps (N, S, S).
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from kdlib.data.sources import PHOTOS, SHAPES, photo, photo_crops, resize, shape_masks
from kdlib.errors import KDError


def boundaries(labels: torch.Tensor) -> torch.Tensor:
    """The exact region boundaries of int label maps (N, H, W) as bool (N, H, W).

    A pixel is an edge when its label differs from its right or its lower neighbour; only that pixel is
    marked, never the neighbour, so every boundary is one pixel thin and the definition is deterministic.
    The image border is not an edge.
    """
    edges = torch.zeros(labels.shape, dtype=torch.bool, device=labels.device)
    edges[..., :, :-1] |= labels[..., :, :-1] != labels[..., :, 1:]
    edges[..., :-1, :] |= labels[..., :-1, :] != labels[..., 1:, :]
    return edges


@functools.cache
def _photos() -> tuple[np.ndarray, ...]:
    return tuple(photo(name) for name in PHOTOS)


def shape_scenes(n: int, size: int, seed: int, shapes_per_image: tuple[int, int] = (2, 4),
                 cols: tuple[float, float] = (0.0, 1.0)) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """n scenes: a photo-textured background, then 2-4 shapes, each filled with a crop of another photo.

    Every region of a scene comes from a different photo. Shapes have a random kind (SHAPES), size,
    position (possibly partly outside the image) and rotation; later shapes may occlude earlier ones.
    Returns images uint8 (n, 3, size, size), labels int64 (n, size, size) (0 background, k the k-th shape
    painted) and edges = boundaries(labels). Texture edges inside a region are not edges: they are
    distractors, as in BSDS. `cols` picks the photo columns textures come from (as in photo_shapes), so
    train and test scenes can use disjoint textures. The same arguments give identical tensors.
    """
    rng = np.random.default_rng(seed)
    photos = _photos()
    images = torch.empty(n, 3, size, size, dtype=torch.uint8)
    labels = torch.zeros(n, size, size, dtype=torch.int64)
    for i in range(n):
        count = int(rng.integers(shapes_per_image[0], shapes_per_image[1] + 1))
        picks = rng.choice(len(photos), count + 1, replace=False)
        image = photo_crops(photos[picks[0]], 1, cols, size, rng)[0]
        for k in range(1, count + 1):
            side = int(rng.uniform(0.3, 0.7) * size)  # the shape's canvas; its radius is 25-45% of it
            top, left = (int(v) for v in rng.integers(-side // 4, size - 3 * side // 4 + 1, 2))
            kind = torch.tensor([rng.integers(len(SHAPES))])
            mask = shape_masks(kind, side, rng)[0].to(torch.uint8)
            # Negative padding crops, so this places the canvas at (top, left) and clips it to the image.
            mask = F.pad(mask, (left, size - left - side, top, size - top - side)).bool()
            texture = photo_crops(photos[picks[k]], 1, cols, size, rng)[0]
            image = torch.where(mask, texture, image)
            labels[i][mask] = k
        images[i] = image
    return images, labels, boundaries(labels)


def _annotator_boundaries(mat: Path) -> np.ndarray:
    """(K, H, W) uint8 Boundaries of the K annotators in one BSDS groundTruth .mat file."""
    from scipy.io import loadmat
    try:
        cells = loadmat(mat)["groundTruth"]
        return np.stack([cells[0, k]["Boundaries"][0, 0] for k in range(cells.shape[1])])
    except Exception as e:  # loadmat raises many types for corrupt files; a wrong layout raises Key/Index errors
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise KDError(f"{mat}: not a readable BSDS groundTruth file ({first})") from None


def load_bsds500(root: str | Path, split: str, size: int,
                 agreement: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """BSDS500's `split` from root/images/<split>/*.jpg and root/groundTruth/<split>/<same stem>.mat.

    A pixel is an edge when at least `agreement` of the image's annotators mark it in `Boundaries`.
    Images are resized to size x size (bilinear, antialiased; the aspect ratio is not kept). Edges are
    resized by adaptive max pooling: an output pixel is an edge when any source pixel it covers is, so
    one-pixel edges survive down-sampling (slightly thickened relative to the new grid) instead of
    being averaged away. Returns images uint8 (N, 3, size, size) and edges bool (N, size, size).
    """
    root = Path(root)
    image_dir, truth_dir = root / "images" / split, root / "groundTruth" / split
    for folder in (image_dir, truth_dir):
        if not folder.is_dir():
            raise KDError(f"{folder}: missing; BSDS500 needs images/<split>/*.jpg and groundTruth/<split>/*.mat")
    jpgs = sorted(image_dir.glob("*.jpg"))
    if not jpgs:
        raise KDError(f"{image_dir}: no .jpg images")
    from PIL import Image
    images, edges = [], []
    for jpg in jpgs:
        mat = truth_dir / f"{jpg.stem}.mat"
        if not mat.is_file():
            raise KDError(f"{mat}: missing; every image in {image_dir} needs its groundTruth .mat")
        with Image.open(jpg) as im:
            pixels = torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1)
        marks = _annotator_boundaries(mat)
        if marks.shape[1:] != tuple(pixels.shape[1:]):
            raise KDError(f"{mat}: boundaries are {marks.shape[1:]} but {jpg.name} is {tuple(pixels.shape[1:])}")
        # Compare counts, not means, so that e.g. 2 of 3 meets agreement 2/3 despite rounding.
        agreed = torch.from_numpy((marks > 0).sum(axis=0) >= agreement * len(marks) - 1e-9)
        images.append(resize(pixels[None], size)[0])
        edges.append(F.adaptive_max_pool2d(agreed[None].float(), size)[0] > 0)
    return torch.stack(images), torch.stack(edges)
