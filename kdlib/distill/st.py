"""Sobolev training as distillation (Czarnecki et al. 2017): match the teacher's outputs and their input-gradients.

Full Jacobians cost one backward pass per class, so the gradients are compared along a random direction of the
output space (the paper's stochastic Sobolev training): g(x) = d/dx <v, log softmax(f(x) / T)>, v ~ N(0, I) drawn
per batch. The student's gradient is built with create_graph, so each step back-propagates through a backward
pass: the method costs about three times KD's step.
"""
import torch
import torch.nn.functional as F

from kdlib.distill.kd import kd_kl
from kdlib.distill.method import AlphaWeighted


def input_gradient(logits: torch.Tensor, x: torch.Tensor, v: torch.Tensor, temperature: float,
                   create_graph: bool) -> torch.Tensor:
    """d/dx <v, log softmax(logits / T)>, summed over the batch (each image's gradient is its own slice)."""
    projected = (F.log_softmax(logits / temperature, dim=1) * v).sum()
    return torch.autograd.grad(projected, x, create_graph=create_graph)[0]


def gradient_gap(student_grad: torch.Tensor, teacher_grad: torch.Tensor) -> torch.Tensor:
    """||g_S - g_T||^2 per input element (so beta does not depend on the image size), averaged over the batch."""
    return F.mse_loss(student_grad, teacher_grad)


class Method(AlphaWeighted):
    """(1 - alpha) CE + alpha (KD at T + beta ||g_S - g_T||^2); terms ce, kd and sobolev."""

    def terms(self, d, x, y, epoch):
        alpha, temperature = d.alpha(epoch), self.spec.temperature
        if alpha == 0:  # labels only: neither the teacher's pass nor the gradients are needed
            logits = d.student(x)
            zero = torch.zeros((), device=x.device)
            return logits, {"ce": d.hard_loss(logits, y), "kd": zero, "sobolev": zero}
        x = x.detach().requires_grad_(True)
        t_logits = d.teacher(x)  # frozen weights: the graph reaches the input only
        v = torch.randn_like(t_logits)
        t_grad = input_gradient(t_logits, x, v, temperature, create_graph=False)
        logits = d.student(x)
        s_grad = input_gradient(logits, x, v, temperature, create_graph=True)
        return logits, {"ce": (1 - alpha) * d.hard_loss(logits, y),
                        "kd": alpha * kd_kl(logits, t_logits.detach(), temperature),
                        "sobolev": alpha * self.spec.beta * gradient_gap(s_grad, t_grad)}
