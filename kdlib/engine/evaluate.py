from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device) -> dict:
    """Mean cross-entropy, top-1 accuracy (%), and the logits and predicted class of every sample, in order."""
    was_training = model.training
    model.eval()
    total_loss, outputs, labels = 0.0, [], []
    for x, y in loader:
        logits = model(x.to(device))
        total_loss += F.cross_entropy(logits, y.to(device), reduction="sum").item()
        outputs.append(logits.cpu())
        labels.append(y)
    model.train(was_training)
    logits, labels = torch.cat(outputs), torch.cat(labels)
    predictions = logits.argmax(1)
    return {"loss": total_loss / len(labels), "acc": 100.0 * (predictions == labels).sum().item() / len(labels),
            "logits": logits, "predictions": predictions, "labels": labels}


def test_report(result: dict, classes: list[str]) -> dict:
    """A run's eval.json, numbers only (DVC metrics): accuracy and loss on the whole test split, and per class."""
    hits = result["predictions"] == result["labels"]
    per_class = {c: 100.0 * hits[result["labels"] == i].float().mean().item() for i, c in enumerate(classes)}
    return {"test_acc": result["acc"], "test_loss": result["loss"], "num_test": len(hits), "per_class_acc": per_class}


def top3_samples(logits: torch.Tensor, labels: torch.Tensor, count: int = 24) -> list[dict]:
    """Top-3 classes and confidences on `count` test images spread evenly over the split, so that the
    prediction figure can compare runs on the same images without loading their models again."""
    probs = logits.float().softmax(1)
    conf, cls = probs.topk(min(3, probs.shape[1]), dim=1)
    picks = torch.linspace(0, len(labels) - 1, min(count, len(labels))).round().long().unique()
    return [{"index": int(i), "label": int(labels[i]), "classes": cls[i].tolist(),
             "probs": [round(p, 5) for p in conf[i].tolist()]} for i in picks]
