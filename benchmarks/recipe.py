"""Seed 001's recipe cost, measured (not asserted): run `python benchmarks/recipe.py`.

For every distilled run of the params file (the first seed of each), on its prepared dataset: training
throughput (images/s, whole steps with loading, augmentation, teacher forward, student forward/backward)
with the full seed-001 augmentation (crop, flip, AutoAugment, random erasing, Mixup/CutMix), augmenting in
the training process and in `--workers` loader processes, against the same run with augmentation off;
and data-loading throughput alone (the loader with full augmentation, no model). Loading is not the
bottleneck while its images/s stay well above the training images/s.
Run the pipeline first (data/<dataset>/ and the teachers' checkpoints must exist).
"""
from __future__ import annotations

import argparse
import time

import torch

from kdlib.config import Augment, Mix, RandomErasing, load_params
from kdlib.data.mixing import batch_mixer
from kdlib.data.prepared import load_prepared, train_loader
from kdlib.distill.distiller import Distiller
from kdlib.engine.checkpoint import load_model
from kdlib.engine.trainer import teacher_checkpoint
from kdlib.models import build_model
from kdlib.paths import dataset_dir

FULL = Augment(crop_padding=4, hflip=True, autoaugment=True, random_erasing=RandomErasing(p=0.25, scale=(0.02, 0.2)))
OFF = Augment(crop_padding=0, hflip=False)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--batches", type=int, default=20, help="batches timed per measurement")
    parser.add_argument("--workers", type=int, default=1, help="loader processes for the second full-aug column")
    args = parser.parse_args()
    params = load_params(args.params)
    print(f"params: {args.params} (profile {params.profile}); {torch.get_num_threads()} threads, CPU")
    workers = FULL.model_copy(update={"workers": args.workers})
    print(f"{'run':26s} {'load img/s (full aug)':>22s} {'train img/s (full aug)':>23s} "
          f"{f'with {args.workers} workers':>18s} {'train img/s (aug off)':>22s}")
    for name in first_seeds(params).values():
        run = params.runs[name]
        files = load_prepared(dataset_dir(run.dataset))
        teacher, _ = load_model(teacher_checkpoint(params, name), params.runs[run.teacher].model, files.num_classes)
        student = build_model(run.model, files.num_classes, run.width, run.block_type)
        distiller = Distiller(student, teacher, run.distill, run.epochs, tuple(files.train.images.shape[1:])).train()
        optimizer = torch.optim.SGD(distiller.parameters(), lr=1e-3, momentum=0.9)
        mixer = batch_mixer(Mix(), files.num_classes)

        def train_step(x, y, mix=True):
            if mix:
                x, y = mixer(x, y)
            _, losses = distiller.forward_train(x, y, 0)
            optimizer.zero_grad(set_to_none=True)
            sum(losses.values()).backward()
            optimizer.step()

        load = images_per_second(train_loader(files, FULL, run.batch_size, seed=0), lambda x, y: mixer(x, y),
                                 args.batches)
        full = images_per_second(train_loader(files, FULL, run.batch_size, seed=0), train_step, args.batches)
        overlapped = images_per_second(train_loader(files, workers, run.batch_size, seed=0), train_step,
                                       args.batches)
        off = images_per_second(train_loader(files, OFF, run.batch_size, seed=0),
                                lambda x, y: train_step(x, y, mix=False), args.batches)
        print(f"{name:26s} {load:22.0f} {full:23.0f} {overlapped:18.0f} {off:22.0f}")


if __name__ == "__main__":
    main()
