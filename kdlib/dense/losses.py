"""Dense distillation losses for seed 002's edge detection: small pure functions on per-pixel logits.

The feature-map term is kdlib.distill.losses.feature_l2.
"""
import torch
import torch.nn.functional as F


def weighted_bce(logits: torch.Tensor, target: torch.Tensor, pos_weight: float = 10.0) -> torch.Tensor:
    """Binary cross-entropy with logits, edge pixels weighted by pos_weight, averaged over pixels.

    The weight makes a missed edge cost pos_weight times a false one, against edges' 1-5% share.
    """
    weight = torch.tensor(pos_weight, dtype=logits.dtype, device=logits.device)
    return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), pos_weight=weight)


def soft_mse(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Mean over pixels of (sigmoid(s) - sigmoid(t))^2: the student imitates the teacher's edge probabilities."""
    return F.mse_loss(torch.sigmoid(student_logits), torch.sigmoid(teacher_logits))


def edge_distillation(student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor,
                      alpha: float = 0.5, pos_weight: float = 10.0) -> dict[str, torch.Tensor]:
    """Seed 002's edge loss, already weighted: {"bce": (1 - alpha) weighted BCE, "soft": alpha soft MSE}."""
    return {"bce": (1 - alpha) * weighted_bce(student_logits, target, pos_weight),
            "soft": alpha * soft_mse(student_logits, teacher_logits)}
