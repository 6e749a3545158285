"""Golden values for the KD loss and the learning-rate schedule, computed by hand."""
import math

import pytest
import torch

from kdlib.config import Distill
from kdlib.distill.distiller import Distiller
from kdlib.distill.losses import kd_kl
from kdlib.engine.optim import warmup_cosine


def test_kd_kl_golden_value():
    # One sample, two classes. T = 2: student logits [0, 0] -> p_s = [.5, .5];
    # teacher logits [2 ln 3, 0] -> p_t = softmax([ln 3, 0]) = [.75, .25].
    # KL(p_t || p_s) = .75 ln(.75/.5) + .25 ln(.25/.5) = .75 ln 1.5 - .25 ln 2; times T^2 = 4.
    student = torch.tensor([[0.0, 0.0]])
    teacher = torch.tensor([[2 * math.log(3), 0.0]])
    expected = 4 * (0.75 * math.log(1.5) - 0.25 * math.log(2))
    assert kd_kl(student, teacher, 2.0).item() == pytest.approx(expected, rel=1e-6)


def test_kd_kl_is_batch_mean_and_zero_on_agreement():
    a = torch.tensor([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]])
    assert kd_kl(a, a, 4.0).item() == pytest.approx(0.0, abs=1e-7)
    one = kd_kl(a[:1], a[1:], 3.0).item()
    both = kd_kl(torch.cat([a[:1], a[:1]]), torch.cat([a[1:], a[1:]]), 3.0).item()
    assert both == pytest.approx(one, rel=1e-6)


def test_distiller_weighs_terms_by_alpha():
    torch.manual_seed(0)
    student, teacher = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    x, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    _, losses = Distiller(student, teacher, Distill(alpha=0.25, temperature=2.0)).forward_train(x, y)
    ce = torch.nn.functional.cross_entropy(student(x), y)
    kd = kd_kl(student(x), teacher(x), 2.0)
    assert losses["ce"].item() == pytest.approx(0.75 * ce.item(), rel=1e-6)
    assert losses["kd"].item() == pytest.approx(0.25 * kd.item(), rel=1e-6)
    assert not any(p.requires_grad for p in teacher.parameters())


@pytest.mark.parametrize("step,expected", [
    (0, 1 / 10), (4, 5 / 10), (9, 1.0),              # linear warm-up over 10 steps
    (10, 1.0),                                        # cosine starts at the peak
    (60, 0.5),                                        # half-way through the cosine part
    (110, 0.0),                                       # the end
])
def test_warmup_cosine_at_chosen_steps(step, expected):
    assert warmup_cosine(step, total=110, warmup=10, floor=0.0) == pytest.approx(expected, abs=1e-12)


def test_cosine_floor():
    assert warmup_cosine(60, total=110, warmup=10, floor=0.2) == pytest.approx(0.2 + 0.8 * 0.5)
