"""Timing for comparisons: alternate the candidates block by block, so drifting clocks and neighbours'
load hit every candidate alike (each block runs one candidate several times, so it runs with warm
caches), and report each one's median milliseconds per call."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import torch
from torch import nn


def alternating_median_ms(fns: Sequence[Callable[[], object]], seconds: float, block: int = 5) -> list[float]:
    """Median ms per call of each function over blocks of `block` calls, taken in turn for about `seconds`."""
    times: list[list[float]] = [[] for _ in fns]
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times[0]) < 5:
        for fn, bucket in zip(fns, times):
            fn()  # the first call after another candidate refills the caches; not timed
            start = time.perf_counter()
            for _ in range(block):
                fn()
            bucket.append((time.perf_counter() - start) / block)
    return [statistics.median(bucket) * 1e3 for bucket in times]


@torch.no_grad()
def latency_ms(models: Sequence[nn.Module], batch_shape: tuple[int, ...], device: torch.device,
               seconds: float = 1.0) -> list[float]:
    """Median inference ms per batch of each model (eval mode), on the same random batch."""
    x = torch.randn(*batch_shape, device=device)
    models = [m.eval().to(device) for m in models]
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def call(model):
        def run():
            model(x)
            sync()
        return run

    return alternating_median_ms([call(m) for m in models], seconds)
