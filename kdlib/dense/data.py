"""A dense experiment's prepared data: data/<profile>/dense/<name>/{train.pt, test.pt, meta.json}.

Super-resolution: HR training patches cut once (seeded) and the held-out HR images, each beside its degraded LR
version, all 8-bit as image files would hold them. Edges: images and their boundary maps.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from kdlib.config import EdgeData, EdgeExperiment, SRData, SRExperiment
from kdlib.data.sources import photo
from kdlib.dense.degrade import degrade
from kdlib.dense.edge_data import load_bsds500, shape_scenes
from kdlib.atomic import atomic_torch_save, atomic_write_text
from kdlib.errors import KDError

FILES = ("train.pt", "test.pt", "meta.json")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def prepare(name: str, exp: SRExperiment | EdgeExperiment, folder: Path) -> dict:
    build = _super_resolution if exp.task == "super_resolution" else _edges
    train, test, meta = build(name, exp.data)
    for file, blob in (("train.pt", train), ("test.pt", test)):
        atomic_torch_save(blob, folder / file)
    atomic_write_text(folder / "meta.json", json.dumps({"task": exp.task, **meta}, indent=1))
    return meta


def load(folder: Path) -> tuple[dict, dict, dict]:
    """(train, test, meta) of a prepared experiment, read with weights_only=True."""
    missing = [f for f in FILES if not (folder / f).is_file()]
    if missing:
        raise KDError(f"{folder}: prepared data is missing {', '.join(missing)}; run the prepare_dense_{folder.name} "
                      "stage first")
    blobs = []
    for file in ("train.pt", "test.pt"):
        try:
            blobs.append(torch.load(folder / file, weights_only=True))
        except Exception as e:  # any unpickling/zip error means the file is damaged
            raise KDError(f"{folder / file}: cannot be read ({type(e).__name__}); run the prepare_dense_{folder.name} "
                          "stage again") from None
    return blobs[0], blobs[1], json.loads((folder / "meta.json").read_text())


def _to_uint8(images: torch.Tensor) -> torch.Tensor:
    return (images * 255).round().clamp(0, 255).to(torch.uint8)


def _folder_images(path: str, key: str) -> list[tuple[str, torch.Tensor]]:
    from PIL import Image
    folder = Path(path)
    files = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
    if not files:
        raise KDError(f"{key}: {folder} is not a folder of images ({', '.join(IMAGE_SUFFIXES)})")
    out = []
    for f in files:
        try:
            with Image.open(f) as img:
                out.append((f.name, torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1).contiguous()))
        except OSError as e:
            raise KDError(f"{f}: cannot be read as an image ({e})") from None
    return out


def _hr_images(name: str, data: SRData, which: str) -> list[tuple[str, torch.Tensor]]:
    if data.source == "folder":
        return _folder_images(getattr(data, f"{which}_path"), f"dense.{name}.data.{which}_path")
    return [(p, torch.from_numpy(photo(p)).permute(2, 0, 1).contiguous()) for p in getattr(data, f"{which}_images")]


def _centre(image: torch.Tensor, size: int | None, multiple: int) -> torch.Tensor:
    """The centre size x size crop, or the whole image trimmed to a multiple of the scale."""
    h, w = image.shape[-2:]
    th, tw = (size, size) if size else (h - h % multiple, w - w % multiple)
    top, left = (h - th) // 2, (w - tw) // 2
    return image[:, top:top + th, left:left + tw]


def _super_resolution(name: str, data: SRData) -> tuple[dict, dict, dict]:
    train, held_out = _hr_images(name, data, "train"), _hr_images(name, data, "eval")
    for which, images, size in (("train", train, data.patch_size), ("eval", held_out, data.eval_size or data.scale)):
        small = [n for n, img in images if min(img.shape[-2:]) < size]
        if small:
            raise KDError(f"dense.{name}.data: {which} image(s) {', '.join(small)} smaller than {size} pixels")
    rng = np.random.default_rng(data.seed)
    patches = []
    for i in range(data.patches):  # round-robin over the images, a random window in each
        image = train[i % len(train)][1]
        top = rng.integers(0, image.shape[1] - data.patch_size + 1)
        left = rng.integers(0, image.shape[2] - data.patch_size + 1)
        patches.append(image[:, top:top + data.patch_size, left:left + data.patch_size])
    hr = torch.stack(patches)
    lr = _to_uint8(degrade(hr.float() / 255, data.scale, data.blur_sigma))
    eval_hr = [_centre(img, data.eval_size, data.scale) for _, img in held_out]
    eval_lr = [_to_uint8(degrade(img[None].float() / 255, data.scale, data.blur_sigma))[0] for img in eval_hr]
    meta = {"scale": data.scale, "blur_sigma": data.blur_sigma, "patch_size": data.patch_size, "patches": data.patches,
            "train_images": [n for n, _ in train], "eval_images": [n for n, _ in held_out],
            "eval_sizes": [list(img.shape[-2:]) for img in eval_hr],
            "description": f"{len(train)} training image(s) cut into {data.patches} HR patches of {data.patch_size}px; "
                           f"held out: {', '.join(n for n, _ in held_out)}; Gaussian blur sigma {data.blur_sigma:g} "
                           f"then bicubic x{data.scale} down-sampling"}
    return {"hr": hr, "lr": lr}, {"hr": eval_hr, "lr": eval_lr, "names": [n for n, _ in held_out]}, meta


def _edges(name: str, data: EdgeData) -> tuple[dict, dict, dict]:
    if data.source == "shapes":
        # Held-out scenes draw their textures from other parts of the photos than the training scenes.
        (train_x, _, train_y), (test_x, _, test_y) = (
            shape_scenes(n, data.image_size, 2 * data.seed + k, cols=cols)
            for k, (n, cols) in enumerate(((data.train_images, (0, 0.75)), (data.test_images, (0.75, 1)))))
        description = (f"procedural scenes: shapes textured with bundled photos, exact boundaries, "
                       f"{data.image_size}x{data.image_size}")
    else:
        train = [load_bsds500(data.path, split, data.image_size, data.agreement) for split in data.train_splits]
        train_x, train_y = torch.cat([x for x, _ in train]), torch.cat([y for _, y in train])
        test_x, test_y = load_bsds500(data.path, data.eval_split, data.image_size, data.agreement)
        description = (f"BSDS500 from {data.path}: {'+'.join(data.train_splits)} for training, {data.eval_split} held "
                       f"out; edge where at least {data.agreement:g} of the annotators mark one; "
                       f"{data.image_size}x{data.image_size}")
    meta = {"image_size": data.image_size, "num_train": len(train_x), "num_test": len(test_x),
            "edge_share": float(train_y.float().mean()), "description": description}
    return {"images": train_x, "edges": train_y}, {"images": test_x, "edges": test_y}, meta
