"""The ONNX file must compute what the PyTorch model computes: the same logits within a tolerance, and the same
class, on every test image."""
from __future__ import annotations

import onnxruntime
import torch
from torch.utils.data import DataLoader

from kdlib.export.onnx_model import predict

TOLERANCE = 1e-4  # max |logit difference|: float32 kernels may sum in another order, nothing more


def parity(reference: torch.Tensor, exported: onnxruntime.InferenceSession, loader: DataLoader) -> dict:
    """The exported model on every batch of `loader` against PyTorch's logits for them (`reference`, in loader
    order): the largest logit difference, the images whose top-1 differs, and the exported model's top-1
    accuracy (%)."""
    diff, differ, correct, seen = 0.0, [], 0, 0
    for x, y in loader:
        eager, ort = reference[seen:seen + len(y)], predict(exported, x)
        diff = max(diff, (eager - ort).abs().max().item())
        differ += (seen + (eager.argmax(1) != ort.argmax(1)).nonzero().flatten()).tolist()
        correct += (ort.argmax(1) == y).sum().item()
        seen += len(y)
    if seen != len(reference):
        raise ValueError(f"{len(reference)} reference logits for {seen} images")
    return {"num_test": seen, "max_abs_logit_diff": diff, "tolerance": TOLERANCE, "differing_top1": differ,
            "onnx_test_acc": 100.0 * correct / seen, "passed": diff <= TOLERANCE and not differ}
