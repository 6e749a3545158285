"""Decoupled knowledge distillation (Zhao et al. 2022): KD split into a target and a non-target class term."""
import torch
import torch.nn.functional as F

from kdlib.distill.method import AddedTerms
from kdlib.distill.schedules import warmup

TARGET_WEIGHT = 1.0  # DKD's alpha on CIFAR; params.yaml's beta weighs the non-target term


def dkd_terms(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
              temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(TCKD, NCKD), both batch means times T^2.

    TCKD: KL between the binary distributions (p_target, 1 - p_target) of teacher and student.
    NCKD: KL between the distributions over the non-target classes alone (the target masked out).
    """
    target = F.one_hot(labels, student_logits.shape[1]).bool()
    p_s = F.softmax(student_logits / temperature, dim=1)
    p_t = F.softmax(teacher_logits / temperature, dim=1)
    b_s = torch.stack([p_s[target], 1 - p_s[target]], dim=1).clamp_min(1e-12)
    b_t = torch.stack([p_t[target], 1 - p_t[target]], dim=1).clamp_min(1e-12)
    tckd = (b_t * (b_t.log() - b_s.log())).sum(1).mean()
    mask = 1000.0 * target  # exp(-1000) is 0: the target drops out of both softmaxes
    nckd = F.kl_div(F.log_softmax(student_logits / temperature - mask, dim=1),
                    F.log_softmax(teacher_logits / temperature - mask, dim=1), reduction="batchmean", log_target=True)
    return tckd * temperature ** 2, nckd * temperature ** 2


class Method(AddedTerms):
    """Cross-entropy plus DKD's terms, which need class indices, not mixed labels."""

    def added(self, d, logits, features, t_logits, t_features, y, epoch):
        tckd, nckd = dkd_terms(logits, t_logits, y, self.spec.temperature)
        warm = warmup(epoch, d.epochs)
        return {"tckd": warm * TARGET_WEIGHT * tckd, "nckd": warm * self.spec.beta * nckd}
