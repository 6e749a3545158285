"""Distillation losses: small pure functions, each with golden-value tests."""
import torch
import torch.nn.functional as F


def kd_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton et al.: KL(p_teacher^T || p_student^T) averaged over the batch, times T^2.

    The T^2 factor keeps the soft term's gradient scale independent of the temperature.
    """
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits / temperature, dim=1)
    return F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True) * temperature ** 2


def logits_mse(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Mean squared error between raw logits (Ba & Caruana's logit regression)."""
    return F.mse_loss(student_logits, teacher_logits)


def feature_l2(student_features: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
    """Seed 000's ||f_T - f_S||^2 between feature maps, averaged over elements so it does not scale with map size."""
    if student_features.shape != teacher_features.shape:
        raise ValueError(f"feature shapes differ: student {tuple(student_features.shape)}, "
                         f"teacher {tuple(teacher_features.shape)}")
    return F.mse_loss(student_features, teacher_features)
