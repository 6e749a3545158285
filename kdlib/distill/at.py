"""Attention transfer (Zagoruyko & Komodakis 2017): match where the networks look, stage by stage."""
import torch
import torch.nn.functional as F

from kdlib.distill.method import AddedTerms, paired_stage_shapes


def attention_map(features: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, H*W): the channel mean of squared activations, L2-normalised per image."""
    return F.normalize(features.pow(2).mean(1).flatten(1), dim=1)


def at_loss(student_features: list[torch.Tensor], teacher_features: list[torch.Tensor]) -> torch.Tensor:
    """Sum over stages of the mean squared difference between attention maps; channel counts may differ."""
    total = 0
    for s, t in zip(student_features, teacher_features, strict=True):
        if s.shape[-2:] != t.shape[-2:]:
            raise ValueError(f"attention maps differ in size: student {tuple(s.shape[-2:])}, teacher {tuple(t.shape[-2:])}")
        total = total + (attention_map(s) - attention_map(t)).pow(2).mean()
    return total


class Method(AddedTerms):
    def __init__(self, spec, student, teacher, input_shape, stage=0):
        super().__init__(spec, student, teacher, input_shape, stage)
        paired_stage_shapes(spec.method, student, teacher, input_shape)

    def added(self, d, logits, features, t_logits, t_features, y, epoch):
        return {"at": self.spec.beta * at_loss(features, t_features)}
