"""The teacher-output cache against the live teacher: run `python benchmarks/teacher_cache.py` (or `make bench`).

For each teacher -> student pair at CIFAR shape (3x32x32, 100 classes), a temperature sweep of logit KD, four points,
each point an epoch of the same batches trained twice: with the live teacher (kdlib's Distiller, teacher forward
every step) and replaying the teacher's logits (kdlib.distill.teacher_outputs: memory-mapped float32, the default,
each batch checked). The replayed sweep also pays one teacher pass that writes the cache (the work of
stages/teacher_outputs.py).
Figures: live epoch / replayed epoch (median over the points; targets 1.5 for ResNet-56 -> ResNet-20, 2 for
ResNet-101 -> MobileNetV2) and the sweep's total time both ways. Weights and images are random: timing does not
depend on them.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tabulate import tabulate

from kdlib.config import Distill
from kdlib.distill.distiller import Distiller
from kdlib.distill.teacher_outputs import load, store
from kdlib.models.build import build_model

PAIRS = (("resnet56", "resnet20"), ("resnet101", "mobilenetv2"))
TEMPERATURES = (1.0, 2.0, 4.0, 8.0)
CLASSES = 100


def epoch_seconds(distiller: Distiller, batches: list) -> float:
    """One epoch of KD training steps over `batches`: forward, losses, backward, SGD step."""
    optimizer = torch.optim.SGD(distiller.parameters(), lr=1e-4, momentum=0.9)
    if hasattr(distiller.teacher, "start"):
        distiller.teacher.start(0)
    started = time.perf_counter()
    for x, y in batches:
        _, losses = distiller.forward_train(x, y, 0)
        optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        optimizer.step()
    return time.perf_counter() - started


def sweep_rows(batch: int, batches: int) -> list[dict]:
    rows = []
    data = [(torch.randn(batch, 3, 32, 32), torch.randint(0, CLASSES, (batch,))) for _ in range(batches)]
    for teacher_name, student_name in PAIRS:
        teacher = build_model(teacher_name, CLASSES).eval().requires_grad_(False)
        with torch.no_grad():  # first calls pay one-off set-up (kernel choice, allocations): not timed
            teacher(data[0][0])
        epoch_seconds(Distiller(build_model(student_name, CLASSES), teacher, Distill()).train(), data[:1])
        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            store(Path(folder), torch.no_grad()(teacher), [data], (1, batch * batches, CLASSES), np.dtype("float32"),
                  None, batches)
            teacher_pass = time.perf_counter() - started
            replay = load(Path(folder), CLASSES)
            live, replayed = [], []
            for t in TEMPERATURES:  # alternating, so that both see the same machine state
                spec = Distill(method="logits", alpha=0.9, temperature=t)
                for source, times in ((teacher, live), (replay, replayed)):
                    torch.manual_seed(0)
                    times.append(epoch_seconds(Distiller(build_model(student_name, CLASSES), source, spec).train(), data))
        rows.append({"teacher -> student": f"{teacher_name} -> {student_name}", "batch": batch, "batches": batches,
                     "live epoch s": statistics.median(live), "replayed epoch s": statistics.median(replayed),
                     "epoch speed-up": statistics.median(live) / statistics.median(replayed),
                     "teacher pass s": teacher_pass, f"sweep of {len(TEMPERATURES)} live s": sum(live),
                     f"sweep of {len(TEMPERATURES)} replayed s": teacher_pass + sum(replayed),
                     "sweep speed-up": sum(live) / (teacher_pass + sum(replayed))})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--batches", type=int, default=3, help="batches per epoch")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(tabulate(sweep_rows(args.batch, args.batches), headers="keys", tablefmt="github", floatfmt=".2f"))


if __name__ == "__main__":
    main()
