"""Hinton et al.'s knowledge distillation: KL between the temperature-softened outputs (method `logits`)."""
import torch
import torch.nn.functional as F

from kdlib.distill.method import AlphaWeighted


def kd_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton et al.: KL(p_teacher^T || p_student^T) averaged over the batch, times T^2.

    The T^2 factor keeps the soft term's gradient scale independent of the temperature.
    """
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits / temperature, dim=1)
    return F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True) * temperature ** 2


class Method(AlphaWeighted):
    def kd(self, d, logits, target):
        return kd_kl(logits, target, self.spec.temperature)
