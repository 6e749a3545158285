"""Neuron selectivity transfer (Huang & Wang 2017): match the distributions of the networks' channel activations.

Each channel of a stage's feature map is one sample (its spatial pattern, L2-normalised); the loss is the squared
maximum mean discrepancy between the student's and the teacher's channels under the polynomial kernel
k(a, b) = (a . b)^2 (d = 2, c = 0), stage by stage. Channel counts may differ; feature sizes may not.
"""
import torch
import torch.nn.functional as F

from kdlib.distill.method import AddedTerms, paired_stage_shapes


def _mean_kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per image, the mean of (a_i . b_j)^2 over all channel pairs (i, j)."""
    return (a @ b.transpose(1, 2)).pow(2).mean((1, 2))


def nst_mmd(student_features: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
    """MMD^2 between the channels of (N, Cs, H, W) and (N, Ct, H, W), averaged over the batch."""
    s = F.normalize(student_features.flatten(2), dim=2)
    t = F.normalize(teacher_features.flatten(2), dim=2)
    return (_mean_kernel(s, s) + _mean_kernel(t, t) - 2 * _mean_kernel(s, t)).mean()


class Method(AddedTerms):
    """CE + beta / 2 * MMD^2 summed over the stages (beta: NST's lambda, 50 with this kernel on CIFAR)."""

    def __init__(self, spec, student, teacher, input_shape, stage=0):
        super().__init__(spec, student, teacher, input_shape, stage)
        paired_stage_shapes(spec.method, student, teacher, input_shape)

    def added(self, d, logits, features, t_logits, t_features, y, epoch):
        mmd = sum(nst_mmd(s, t) for s, t in zip(features, t_features, strict=True))
        return {"nst": self.spec.beta / 2 * mmd}
