"""Edge-map metrics for seed 002's edge detection: Dice and a tolerance-based ODS F-measure."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _per_image(x: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) or (N, H, W) -> (N, H*W)."""
    return x.reshape(x.shape[0], -1)


def dice(prob: torch.Tensor, target: torch.Tensor, threshold: float = 0.5) -> float:
    """Mean over images of 2|P ∩ G| / (|P| + |G|), P = prob > threshold; an image with both empty counts as 1."""
    pred, truth = _per_image(prob > threshold), _per_image(target.bool())
    inter = (pred & truth).sum(1).double()
    total = (pred.sum(1) + truth.sum(1)).double()
    scores = torch.where(total > 0, 2 * inter / total.clamp(min=1), torch.ones_like(total))
    return scores.mean().item()


def _dilate(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Max over the (2r+1) x (2r+1) square around every pixel of (N, H, W) maps."""
    return F.max_pool2d(x[:, None].float(), 2 * radius + 1, stride=1, padding=radius)[:, 0]


def ods_f(prob: torch.Tensor, target: torch.Tensor, tolerance: int = 2,
          thresholds: int = 99) -> dict[str, float]:
    """Optimal dataset scale F-measure: one threshold for the whole set, the one of best F.

    Approximates the BSDS benchmark: a predicted edge pixel is correct when a true edge lies within the
    (2 tolerance + 1) square around it (precision), a true edge pixel is found when a prediction does
    (recall), counted over the whole set. Unlike BSDS, predictions are not thinned by non-maximum
    suppression and matching is not one-to-one, so thick predictions are not penalised. Thresholds are
    linspace(0.01, 0.99, thresholds); ties go to the lowest. A ratio with an empty denominator is 0.
    Returns {"f", "threshold", "precision", "recall"}.
    """
    prob = prob.reshape(prob.shape[0], *prob.shape[-2:]).float()
    truth = target.reshape(prob.shape).bool()
    levels = torch.linspace(0.01, 0.99, thresholds, dtype=torch.float64)
    # Thresholding commutes with max pooling, so dilate(prob > t) = dilate(prob) > t: every threshold's
    # counts come from sorted values with one search each instead of one dilation per threshold.
    near_truth = prob[_dilate(truth, tolerance) > 0]
    found = _dilate(prob, tolerance)[truth]

    def above(values: torch.Tensor) -> torch.Tensor:
        ordered = values.double().sort().values
        return len(ordered) - torch.searchsorted(ordered, levels, right=True)

    predicted, correct, recalled = above(prob.flatten()), above(near_truth), above(found)
    precision = correct / predicted.clamp(min=1)
    recall = recalled / max(int(truth.sum()), 1)
    f = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall).clamp(min=1e-12), 0.0)
    best = int(torch.argmax(f))  # argmax returns the first maximum
    return {"f": f[best].item(), "threshold": levels[best].item(), "precision": precision[best].item(),
            "recall": recall[best].item()}
