"""Data loading against training, measured (not asserted): run `python benchmarks/recipe.py`.

Seed 001's recipe cost: for every distilled run of the params file (the first seed of each) on its prepared
dataset, training throughput (images/s, whole steps with loading, augmentation, teacher forward, student
forward/backward) with the full seed-001 augmentation (crop, flip, AutoAugment, random erasing, Mixup/CutMix),
augmenting in the training process and in `--workers` loader processes, against the same run with augmentation
off; and data-loading throughput alone (the loader with full augmentation, no model). Runs whose loss needs hard
labels (DKD) cannot take Mixup/CutMix and are left out. The benchmark suite (suite.py) asks the same of every
distilled run with its own augmentation (`own_recipe_rows`). Loading is not the bottleneck while its images/s stay
well above the training images/s.
Run the pipeline first (data/<dataset>/ and the teachers' checkpoints must exist).
"""
from __future__ import annotations

import argparse
import time

import torch
from tabulate import tabulate

from kdlib.config import Augment, Mix, RandomErasing, load_params
from kdlib.data.mixing import batch_mixer
from kdlib.data.prepared import load_prepared, train_loader
from kdlib.distill.distiller import Distiller
from kdlib.distill.methods import with_flag
from kdlib.engine.checkpoint import inference_model
from kdlib.models.build import build_model

FULL = Augment(crop_padding=4, hflip=True, autoaugment=True, random_erasing=RandomErasing(p=0.25, scale=[0.02, 0.2]))
OFF = Augment(crop_padding=0, hflip=False)
HARD_LABELS = with_flag("needs_class_indices")  # losses that need each image's class, not a mixed label


def first_seeds(params) -> dict[str, str]:
    """Written run -> the run of its first seed, for every distilled run."""
    return {name: next(iter(params.replicas[name].values())) for name, run in params.written.items() if run.teacher}


def images_per_second(batches, step, limit: int) -> float:
    """Throughput over `limit` batches after one untimed warm-up batch."""
    seen, start = 0, None
    for i, (x, y) in enumerate(batches):
        step(x, y)
        if start is None:
            start = time.perf_counter()
            continue
        seen += len(x)
        if i == limit:
            break
    return seen / (time.perf_counter() - start)


def throughput(params, name: str, augment: Augment, mix: Mix | None, batches: int) -> tuple[float, float]:
    """(loader images/s, training images/s) of run `name` (its data, teacher and student) with this augmentation
    and batch mixing: the loader alone, then whole training steps fed by it."""
    run = params.runs[name]
    files = load_prepared(params.layout.dataset_dir(run.dataset))
    teacher = inference_model(params, run.teacher, files.num_classes)
    student = build_model(run.model, files.num_classes, run.width, run.block_type)
    distiller = Distiller(student, teacher, run.distill, run.epochs, tuple(files.train.images.shape[1:])).train()
    optimizer = torch.optim.SGD(distiller.parameters(), lr=1e-3, momentum=0.9)
    mixer = batch_mixer(mix, files.num_classes) if mix else (lambda x, y: (x, y))

    def train_step(x, y):
        _, losses = distiller.forward_train(*mixer(x, y), 0)
        optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        optimizer.step()

    loader = lambda: train_loader(files, augment, run.batch_size, seed=0)  # noqa: E731
    return (images_per_second(loader(), lambda x, y: mixer(x, y), batches),
            images_per_second(loader(), train_step, batches))


def recipe_rows(params, batches: int, workers: int) -> list[dict]:
    """Seed 001's question, for every distilled run (first seed) whose loss takes mixed labels: images/s of the
    loader and of training with the full augmentation, augmenting in the training process or in `workers` loader
    processes, and of training with augmentation off."""
    rows = []
    for name in first_seeds(params).values():
        if params.runs[name].distill.method in HARD_LABELS:
            continue
        load, full = throughput(params, name, FULL, Mix(), batches)
        overlapped = throughput(params, name, FULL.model_copy(update={"workers": workers}), Mix(), batches)[1]
        off = throughput(params, name, OFF, None, batches)[1]
        rows.append({"run": name, "load_img_s": load, "train_img_s": full, f"train_{workers}_workers_img_s": overlapped,
                     "train_aug_off_img_s": off})
    return rows


def own_recipe_rows(params, batches: int) -> list[dict]:
    """Every distilled run (first seed) with its own augmentation and mixing: loader against training images/s."""
    rows = []
    for name in first_seeds(params).values():
        run = params.runs[name]
        load, train = throughput(params, name, run.augment, run.mix, batches)
        rows.append({"run": name, "load_img_s": load, "train_img_s": train, "load_over_train": load / train})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--batches", type=int, default=20, help="batches timed per measurement")
    parser.add_argument("--workers", type=int, default=1, help="loader processes for the second full-aug column")
    args = parser.parse_args()
    params = load_params(args.params)
    print(f"params: {args.params} (profile {params.profile}); {torch.get_num_threads()} threads, CPU")
    print(tabulate(recipe_rows(params, args.batches, args.workers), headers="keys", tablefmt="github",
                   floatfmt=".0f"))


if __name__ == "__main__":
    main()
