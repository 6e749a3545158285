"""A model as a self-describing ONNX file: 8-bit images in (N x C x H x W, the normalisation inside the graph), a
dynamic batch, and what a reader needs in its metadata (task, classes, input size); and an onnxruntime session that
runs it on the CPU."""
from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch
from torch import nn

from kdlib.errors import KDError

# torch.export's own operator set (asking it for 17 converts down after translating); the tracer writes it directly.
OPSET = 18
INPUT, OUTPUT = "images", "logits"


class Deployable(nn.Module):
    """`model` as a deployment takes it: uint8 images (N x C x H x W, 0-255) in, scaled to [0, 1] and standardised
    by `mean` and `std` per channel inside the graph, and `finish` (a sigmoid, a clamp) applied to its output."""

    def __init__(self, model: nn.Module, mean, std, finish=None):
        super().__init__()
        self.model, self.finish = model, finish
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.model((images.float() / 255 - self.mean) / self.std)
        return self.finish(out) if self.finish is not None else out


def example_images(shape: tuple[int, ...]) -> torch.Tensor:
    """A batch of 2 uint8 images of `shape` (C, H, W): torch.export specializes a dimension of size 1."""
    return torch.randint(0, 256, (2, *shape), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def export_onnx(model: nn.Module, path: Path, example: torch.Tensor, metadata: dict | None = None,
                output: str = OUTPUT, dynamic_size: bool = False) -> None:
    """Write `model` (eval mode, CPU) to `path`, one self-contained file that takes any batch size (and with
    `dynamic_size`, any image height and width), fed tensors like `example`; `metadata` (text values, or JSON of
    other values) goes into the file's metadata_props, which onnxruntime reads as custom_metadata_map.

    Through torch.onnx's TorchScript tracer where it can (0.7 s for the demo's convnets, against 3.6 s through
    torch.export, 2.5 s of which is that exporter's start-up in every process), else through torch.export, which
    also takes what tracing cannot (a torch without the tracer, or an operator it has no translation for). The
    export stage's parity check proves the file against PyTorch either way."""
    model = model.cpu().eval()
    axes = {0: "batch", **({2: "height", 3: "width"} if dynamic_size else {})}
    try:
        with warnings.catch_warnings(), _native_stdout_silenced():
            warnings.simplefilter("ignore")  # the tracer's deprecation and tracing notes
            torch.onnx.export(_traceable(model, example), (example,), str(path), input_names=[INPUT], output_names=[output],
                              opset_version=OPSET, dynamo=False, dynamic_axes={INPUT: axes, output: axes})
    except Exception:
        _export_through_torch_export(model, example, path, output, axes)
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as e:
        raise KDError(f"{path}: ONNX export failed ({_first_line(e)})") from None
    if metadata:
        exported = onnx.load(str(path))
        onnx.helper.set_model_props(exported, {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()})
        onnx.save(exported, str(path))


def _traceable(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """`model`, or a copy of it whose adaptive average pools that the tracer refuses (an output size that does not
    divide the input's: a LeNet head pooling 16x16 images' 1x1 maps to 5x5) are the linear maps they are at this
    image size, which the tracer writes as two MatMuls."""
    sizes: dict[str, tuple[int, int]] = {}

    def record(name: str):
        def hook(module, args, output) -> None:  # a hook that returns something replaces the output
            sizes[name] = tuple(args[0].shape[-2:])
        return hook
    hooks = [module.register_forward_hook(record(name))
             for name, module in model.named_modules() if isinstance(module, nn.AdaptiveAvgPool2d)]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for hook in hooks:
            hook.remove()
    refused = {name: _PoolingMatrices(model.get_submodule(name), size) for name, size in sizes.items()}
    refused = {name: pool for name, pool in refused.items() if not pool.divides}
    if not refused:
        return model
    model = copy.deepcopy(model)
    for name, pool in refused.items():
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, pool)
    return model


class _PoolingMatrices(nn.Module):
    """An adaptive average pool on maps of a fixed size: rows @ x @ cols, where output cell i of a side averages
    input cells floor(i * n / m) to ceil((i + 1) * n / m) - 1 (PyTorch's definition)."""

    def __init__(self, pool: nn.AdaptiveAvgPool2d, size: tuple[int, int]):
        super().__init__()
        wanted = pool.output_size if isinstance(pool.output_size, tuple) else (pool.output_size,) * 2
        (h, w), (oh, ow) = size, (o or n for o, n in zip(wanted, size))
        self.divides = h % oh == 0 and w % ow == 0  # the tracer writes these itself, as average pooling
        self.register_buffer("rows", self.averaging(h, oh))
        self.register_buffer("cols", self.averaging(w, ow).T.contiguous())

    @staticmethod
    def averaging(n: int, m: int) -> torch.Tensor:
        weights = torch.zeros(m, n)
        for i in range(m):
            start, end = (i * n) // m, -((-(i + 1) * n) // m)
            weights[i, start:end] = 1.0 / (end - start)
        return weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rows @ x @ self.cols


def _export_through_torch_export(model: nn.Module, example: torch.Tensor, path: Path, output: str,
                                 axes: dict[int, str]) -> None:
    for chatty in ("onnxscript", "onnx_ir"):  # the exporter's optimizer logs every pass at INFO
        logging.getLogger(chatty).setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's notes on its own internals
            torch.onnx.export(model, (example,), path, input_names=[INPUT], output_names=[output],
                              opset_version=OPSET, dynamo=True, external_data=False, verbose=False,
                              dynamic_shapes=({i: torch.export.Dim(name) for i, name in axes.items()},))
    except Exception as e:
        raise KDError(f"{path}: ONNX export failed ({_first_line(e)})") from None


@contextlib.contextmanager
def _native_stdout_silenced():
    """The tracer's C++ side prints its whole graph to the process's stdout when it gives up, before the fallback."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _first_line(e: Exception) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


def opset(path: Path) -> int:
    return next(o.version for o in onnx.load(str(path), load_external_data=False).opset_import if o.domain in ("", "ai.onnx"))


def session(path: Path, threads: int) -> onnxruntime.InferenceSession:
    """A CPU session on `threads` intra-op threads (PyTorch's count, so that both runtimes get the same cores)."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.log_severity_level = 3  # errors only
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def predict(model: onnxruntime.InferenceSession, images: torch.Tensor) -> torch.Tensor:
    """The exported model's (only) output for a batch of uint8 images."""
    return torch.from_numpy(model.run(None, {INPUT: np.ascontiguousarray(images.numpy())})[0])
