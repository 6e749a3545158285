"""Distillation losses that several modules share: small pure functions, each with golden-value tests.

Each method's own loss lives in its module (kd, logits_mse, at, dkd, ...); feature_l2 serves feature KD and
the dense tasks' feature term (kdlib.dense.train).
"""
import torch
import torch.nn.functional as F


def feature_l2(student_features: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
    """Seed 000's ||f_T - f_S||^2 between feature maps, averaged over elements so it does not scale with map size."""
    if student_features.shape != teacher_features.shape:
        raise ValueError(f"feature shapes differ: student {tuple(student_features.shape)}, "
                         f"teacher {tuple(teacher_features.shape)}")
    return F.mse_loss(student_features, teacher_features)
