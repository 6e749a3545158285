"""The teacher-output cache: a teacher's logits on exactly the batches of a training stream, computed once.

Every run with the same training stream (kdlib.data.stream; kdlib.config.streams says which runs share one) and
the same teacher sees the same images in the same batches. A stage of its
own (stages/teacher_outputs.py) runs the teacher over that stream once; each student whose method reads nothing
of the teacher but its logits (the rows of kdlib.distill.methods with teacher_logits_only) and whose
`teacher_cache` allows it replays them instead of running the teacher, so that a temperature or alpha sweep
trains every point at the student's cost alone.

Files, in data/<profile>/teacher_outputs/<the first run, alphabetically, that reads them>/:
  logits.npy   (epochs, images, classes) in the profile's teacher_outputs.precision, rows in stream order; with
               teacher_outputs.top_k = k: (epochs, images, 2k + 1) float32, each row the k largest logits, their
               classes, and the log of the other classes' total exp (spread evenly over them when read)
  batches.npy  (epochs, batches) float64: each batch's sum of pixels, which the replay checks batch by batch
  stream.json  what the stream and the teacher are, the fingerprint of everything the logits depend on, and the
               seconds the teacher's forward passes took
"""
from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from kdlib.atomic import atomic_write_stream, atomic_write_text
from kdlib.config import Params, stream_name, stream_recipe, streams
from kdlib.data.stream import TrainingStream, run_files
from kdlib.engine.checkpoint import inference_model, teacher_checkpoint
from kdlib.engine.precision import autocast
from kdlib.errors import KDError

FORMAT = "kdlib-teacher-outputs-1"
MB = 10 ** 6


def fingerprint(params: Params, name: str) -> str:
    """Hash of the stream recipe and of the bytes of the training split and of the teacher's checkpoint."""
    files = [params.layout.dataset_dir(params.runs[name].dataset) / "train.pt", teacher_checkpoint(params, name)]
    blob = json.dumps({"recipe": stream_recipe(params, name),
                       "files": [hashlib.sha256(f.read_bytes()).hexdigest() for f in files]}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _layout(params: Params, classes: int) -> tuple[int, np.dtype]:
    """(values per image, their type) in logits.npy."""
    k = params.teacher_outputs.top_k
    if k is not None and k < classes:
        return 2 * k + 1, np.dtype(np.float32)
    return classes, np.dtype(params.teacher_outputs.precision)


def pack_logits(logits: torch.Tensor, k: int | None, dtype: np.dtype) -> np.ndarray:
    logits = logits.float()
    if k is None or k >= logits.shape[1]:
        limit = np.finfo(dtype).max
        if logits.abs().max() > limit:
            raise KDError(f"the teacher's logits reach {logits.abs().max().item():.3g}, beyond {dtype.name}'s range "
                          f"({limit:.0f}); set teacher_outputs.precision: float32")
        return logits.cpu().numpy().astype(dtype)
    values, classes = logits.topk(k, dim=1)
    rest = logits.scatter(1, classes, float("-inf")).logsumexp(dim=1, keepdim=True)
    return torch.cat([values, classes.float(), rest], dim=1).cpu().numpy()


def unpack_logits(rows: np.ndarray, classes: int, k: int | None) -> torch.Tensor:
    """Logits from rows `pack_logits` wrote with the same `k` (the width alone cannot tell: 2k + 1 may equal
    `classes`)."""
    rows = torch.from_numpy(np.array(rows, dtype=np.float32))
    if k is None or k >= classes:
        return rows
    # The other classes share the rest's probability evenly: softmax at temperature 1 is exact for the k kept.
    fill = rows[:, -1:] - math.log(classes - k)
    return fill.expand(-1, classes).clone().scatter_(1, rows[:, k:2 * k].long(), rows[:, :k])


def store(folder: Path, teacher, epochs, shape: tuple[int, int, int], dtype: np.dtype, top_k: int | None,
          batches: int) -> float:
    """Run `teacher` (images -> logits) over `epochs` (each an iterable of (images, labels) batches) and write
    logits.npy and batches.npy, streaming: the logits never sit in memory whole. Returns the seconds the teacher's
    forward passes took (what a live-teacher run spends on them)."""
    sums, seconds = np.zeros((shape[0], batches)), [0.0]

    def logits(f) -> None:
        np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(dtype),
                                                 "fortran_order": False, "shape": shape})
        for e, epoch in enumerate(epochs):
            for b, (x, _) in enumerate(epoch):
                started = time.perf_counter()
                out = teacher(x)
                seconds[0] += time.perf_counter() - started
                f.write(pack_logits(out, top_k, dtype).tobytes())
                sums[e, b] = x.double().sum().item()

    atomic_write_stream(folder / "logits.npy", logits)
    atomic_write_stream(folder / "batches.npy", lambda f: np.save(f, sums))
    return seconds[0]


def write(params: Params, stream: str, device: torch.device) -> dict:
    """Run the teacher over the stream and write the cache's files; returns what stream.json holds."""
    names = streams(params).get(stream)
    if not names:
        known = ", ".join(streams(params)) or "none: no run replays its teacher's logits"
        raise KDError(f"teacher outputs '{stream}': no run of profile {params.profile} reads them "
                      f"(its caches: {known})")
    name = names[0]
    run = params.runs[name]
    files = run_files(params, name)
    batches = TrainingStream(files, run, run.batch_size, device)
    width, dtype = _layout(params, files.num_classes)
    shape = (run.epochs, batches.images, width)
    size = math.prod(shape) * dtype.itemsize
    folder = params.layout.teacher_outputs_dir(stream)
    limit = params.teacher_outputs.max_mb * MB
    if size > limit:
        raise KDError(f"teacher outputs of run {name}: {size / MB:,.1f} MB ({run.epochs} epochs x {batches.images} "
                      f"images x {width} values x {dtype.itemsize} bytes), above teacher_outputs.max_mb "
                      f"({params.teacher_outputs.max_mb:g}); set teacher_outputs.top_k, raise max_mb, or set "
                      f"teacher_cache: false on {', '.join(names)}")
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if size > free:
        raise KDError(f"{folder}: teacher outputs need {size / MB:,.1f} MB, the disk has {free / MB:,.1f} MB free")
    teacher = inference_model(params, run.teacher, files.num_classes).to(device).eval().requires_grad_(False)

    def forward(x: torch.Tensor) -> torch.Tensor:  # as the Distiller runs a live teacher
        with torch.no_grad(), autocast(run.amp, device, name):
            return teacher(x)

    seconds = store(folder, forward, (batches.epoch(e) for e in range(run.epochs)), shape, dtype,
                    params.teacher_outputs.top_k, len(batches))
    record = {"format": FORMAT, "fingerprint": fingerprint(params, name), "runs": names,
              "shape": list(shape), "dtype": dtype.name, "classes": files.num_classes, "mb": round(size / MB, 3),
              "teacher_seconds": round(seconds, 3),
              **stream_recipe(params, name)}
    atomic_write_text(folder / "stream.json", json.dumps(record, indent=1))  # last: it vouches for the other two
    return record


class ReplayedTeacher(nn.Module):
    """Stands in for the teacher of a run that replays its logits: called on a batch of the run's stream, it returns
    the teacher's logits on that batch, after checking the batch is the one the teacher saw. `start(epoch)` before
    each epoch's first batch."""

    def __init__(self, folder: Path, logits: np.ndarray, sums: np.ndarray, classes: int, top_k: int | None,
                 rerun: str):
        super().__init__()
        self.folder, self.logits, self.sums, self.classes, self.rerun = folder, logits, sums, classes, rerun
        self.top_k = top_k
        self.start(0)

    def start(self, epoch: int) -> None:
        self.epoch, self.batch, self.row = epoch, 0, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = len(x)
        if self.batch >= self.sums.shape[1] or not math.isclose(x.double().sum().item(),
                                                                 self.sums[self.epoch, self.batch], rel_tol=1e-9):
            raise KDError(f"{self.folder}: batch {self.batch + 1} of epoch {self.epoch + 1} is not the one the teacher "
                          f"saw (the training stream changed since the cache was written); {self.rerun}")
        rows = self.logits[self.epoch, self.row:self.row + n]
        self.batch, self.row = self.batch + 1, self.row + n
        return unpack_logits(rows, self.classes, self.top_k).to(x.device)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list]:
        return self(x), []


def teacher_seconds_per_epoch(params: Params, name: str) -> float:
    """What a live teacher would add to each of run `name`'s epochs: its cache's forward passes, per epoch."""
    folder = params.layout.teacher_outputs_dir(stream_name(params, name))
    record = json.loads((folder / "stream.json").read_text())
    return record["teacher_seconds"] / record["shape"][0]


def replayed_teacher(params: Params, name: str, classes: int, images: int) -> ReplayedTeacher:
    """Run `name`'s cached teacher logits, checked to be those of its stream and teacher as they are now."""
    stream = stream_name(params, name)
    folder = params.layout.teacher_outputs_dir(stream)
    rerun = f"rerun `{params.command('stages/teacher_outputs.py', stream)}` (or the DAG) first"
    missing = [f.name for f in params.layout.teacher_outputs_files(stream) if not f.is_file()]
    if missing:
        raise KDError(f"{folder}: teacher outputs not found ({', '.join(missing)}); {rerun}")
    try:
        record = json.loads((folder / "stream.json").read_text())
        teacher = load(folder, classes, params.teacher_outputs.top_k, rerun)
    except (OSError, ValueError) as e:
        raise KDError(f"{folder}: teacher outputs cannot be read ({type(e).__name__}: {e}); {rerun}") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise KDError(f"{folder / 'stream.json'}: not a kdlib teacher-output record; {rerun}")
    if record.get("fingerprint") != fingerprint(params, name):
        raise KDError(f"{folder}: computed for another stream, teacher or dataset than run {name} has now; {rerun}")
    width, dtype = _layout(params, classes)
    epochs, logits = params.runs[name].epochs, teacher.logits
    if logits.shape != (epochs, images, width) or logits.dtype != dtype or teacher.sums.shape[0] != epochs:
        raise KDError(f"{folder / 'logits.npy'}: holds {logits.dtype} {logits.shape}, run {name} needs {dtype.name} "
                      f"{(epochs, images, width)}; {rerun}")
    return teacher


def load(folder: Path, classes: int, top_k: int | None = None, rerun: str = "") -> ReplayedTeacher:
    """The replay of the files in `folder` (logits memory-mapped: an epoch is read as it is trained)."""
    return ReplayedTeacher(folder, np.load(folder / "logits.npy", mmap_mode="r", allow_pickle=False),
                           np.load(folder / "batches.npy", allow_pickle=False), classes, top_k, rerun)
