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
    return {"loss": total_loss / len(labels), "acc": 100.0 * (predictions == labels).float().mean().item(),
            "logits": logits, "predictions": predictions, "labels": labels}
