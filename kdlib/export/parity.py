"""The ONNX file must compute what the PyTorch model computes: the same logits within a tolerance, and the same
class, on every test image."""
from __future__ import annotations

import onnxruntime
import torch

from kdlib.export.onnx_model import predict

TOLERANCE = 1e-4  # max |logit difference|: float32 kernels may sum in another order, nothing more


def parity(reference: torch.Tensor, exported: onnxruntime.InferenceSession, images: torch.Tensor,
           labels: torch.Tensor, batch_size: int) -> dict:
    """The exported model on the test `images` (uint8 for a deployed classifier), batch by batch, against PyTorch's logits for them
    (`reference`, in order): the largest logit difference, the images whose top-1 differs, and the exported model's
    top-1 accuracy (%)."""
    if len(reference) != len(images):
        raise ValueError(f"{len(reference)} reference logits for {len(images)} images")
    ort = torch.cat([predict(exported, images[i:i + batch_size]) for i in range(0, len(images), batch_size)])
    differ = (reference.argmax(1) != ort.argmax(1)).nonzero().flatten().tolist()
    diff = (reference - ort).abs().max().item()
    return {"num_test": len(images), "max_abs_logit_diff": diff, "tolerance": TOLERANCE, "differing_top1": differ,
            "onnx_test_acc": 100.0 * (ort.argmax(1) == labels).sum().item() / len(images),
            "passed": diff <= TOLERANCE and not differ}
