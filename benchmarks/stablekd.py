"""StableKD's cost per epoch against vanilla KD, measured (not asserted): run `python benchmarks/stablekd.py`.

The same teacher-student pair, batch and images for every scheme: one epoch of whole training steps (teacher
forward, student forward and backward, SGD step) on random images, for vanilla KD and for StableKD in each of
its stages (k blocks, recomposed stage by stage to one). The seed's Table 7 claims no extra cost: StableKD runs
every student block once per batch, on the teacher's features instead of the student's.
"""
from __future__ import annotations

import argparse
import time

import torch

from kdlib.config import Distill
from kdlib.distill.distiller import Distiller
from kdlib.models.build import build_model


def seconds_per_epoch(distiller: Distiller, images: torch.Tensor, labels: torch.Tensor, batch: int) -> float:
    optimizer = torch.optim.SGD(distiller.parameters(), lr=0.01, momentum=0.9)
    distiller.train()

    def step(i):
        x, y = images[i:i + batch], labels[i:i + batch]
        _, losses = distiller.forward_train(x, y)
        optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        optimizer.step()

    step(0)  # warm-up: first-call allocations
    start = time.perf_counter()
    for i in range(0, len(labels), batch):
        step(i)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default="vgg16")
    parser.add_argument("--student", default="vgg_shallow")
    parser.add_argument("--width", type=float, default=0.125, help="width of both networks")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="epochs per scheme; the median is reported")
    args = parser.parse_args()
    torch.manual_seed(0)
    teacher = build_model(args.teacher, 10, args.width).eval()
    student = build_model(args.student, 10, args.width)
    images, labels = torch.randn(args.images, 3, args.size, args.size), torch.randint(0, 10, (args.images,))
    blocks = len(student.stages) + 1
    schemes = {"KD": (Distill(alpha=0.5, temperature=1.0), 0)}
    stage = 0
    while True:
        spec = Distill(method="stablekd", temperature=1.0)
        groups = Distiller(student, teacher, spec, stage=stage).groups
        schemes[f"StableKD stage {stage} ({len(groups)} blocks)"] = (spec, stage)
        if len(groups) == 1:
            break
        stage += 1
    print(f"{args.teacher} -> {args.student} (width {args.width}), {args.images} images of {args.size}x{args.size}, "
          f"batch {args.batch}, {torch.get_num_threads()} threads, StableKD-{blocks}/{stage}; median of "
          f"{args.repeats} epochs")
    distillers = {name: Distiller(student, teacher, spec, stage=stage) for name, (spec, stage) in schemes.items()}
    runs = {name: [] for name in schemes}
    for _ in range(args.repeats):  # schemes take turns, so warm-up and clock drift hit them alike
        for name, distiller in distillers.items():
            runs[name].append(seconds_per_epoch(distiller, images, labels, args.batch))
    times = {name: sorted(t)[args.repeats // 2] for name, t in runs.items()}
    for name, t in times.items():
        print(f"  {name:32s} {t:6.2f} s/epoch   {t / times['KD']:.2f} x KD")
    stable = [t for n, t in times.items() if n != "KD"]
    print(f"StableKD over its {len(stable)} stages (equal epochs each): "
          f"{sum(stable) / len(stable) / times['KD']:.2f} x KD per epoch")


if __name__ == "__main__":
    main()
