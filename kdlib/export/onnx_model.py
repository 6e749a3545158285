"""A model as an ONNX file with a dynamic batch, and an onnxruntime session that runs it on the CPU."""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch
from torch import nn

from kdlib.errors import KDError

# The dynamo exporter's own operator set (asking it for 17 converts down after translating).
OPSET = 18
INPUT, OUTPUT = "images", "logits"


def export_onnx(model: nn.Module, path: Path, image_shape: tuple[int, ...]) -> None:
    """Write `model` (eval mode, CPU) to `path`, one self-contained file that takes any batch size."""
    model = model.cpu().eval()
    for chatty in ("onnxscript", "onnx_ir"):  # the exporter's optimizer logs every pass at INFO
        logging.getLogger(chatty).setLevel(logging.WARNING)
    example = torch.zeros(2, *image_shape)  # batch 2: torch.export specializes a dimension of size 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's notes on its own internals
            torch.onnx.export(model, (example,), path, input_names=[INPUT], output_names=[OUTPUT],
                              opset_version=OPSET, dynamo=True, external_data=False, verbose=False,
                              dynamic_shapes=({0: torch.export.Dim("batch")},))
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as e:
        raise KDError(f"{path}: ONNX export failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None


def opset(path: Path) -> int:
    return next(o.version for o in onnx.load(str(path), load_external_data=False).opset_import if o.domain in ("", "ai.onnx"))


def session(path: Path, threads: int) -> onnxruntime.InferenceSession:
    """A CPU session on `threads` intra-op threads (PyTorch's count, so that both runtimes get the same cores)."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.log_severity_level = 3  # errors only
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def predict(model: onnxruntime.InferenceSession, images: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(model.run([OUTPUT], {INPUT: np.ascontiguousarray(images.numpy())})[0])
