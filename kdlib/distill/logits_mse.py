"""Logit regression (Ba & Caruana): MSE between the student's and the teacher's logits."""
import torch
import torch.nn.functional as F

from kdlib.distill.method import AlphaWeighted


def logits_mse(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Mean squared error between raw logits (Ba & Caruana's logit regression)."""
    return F.mse_loss(student_logits, teacher_logits)


class Method(AlphaWeighted):
    def kd(self, d, logits, target):
        return logits_mse(logits, target)
