"""Golden values for the KD losses, the alpha schedules and the learning-rate schedule, computed by hand."""
import math

import pytest
import torch

from kdlib.config import Distill
from kdlib.distill.distiller import Distiller
from kdlib.distill.kd import kd_kl
from kdlib.distill.logits_mse import logits_mse
from kdlib.distill.losses import feature_l2
from kdlib.distill.schedules import alpha_at
from kdlib.models.build import build_model
from kdlib.reparam.fusion import to_deploy
from tests.test_reparam import randomise_bn
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


def test_logits_mse_golden_value():
    # differences (1, -2) and (0, 3): squares 1, 4, 0, 9 -> mean 3.5
    student = torch.tensor([[1.0, 0.0], [2.0, 3.0]])
    teacher = torch.tensor([[0.0, 2.0], [2.0, 0.0]])
    assert logits_mse(student, teacher).item() == pytest.approx(3.5)


def test_feature_l2_golden_value_and_shape_check():
    s = torch.zeros(1, 2, 2, 2)
    t = torch.tensor([[[[1.0, 1.0], [1.0, 1.0]], [[3.0, 3.0], [3.0, 3.0]]]])
    assert feature_l2(s, t).item() == pytest.approx((4 * 1 + 4 * 9) / 8)  # ||f_T - f_S||^2 over 8 elements
    with pytest.raises(ValueError, match="feature shapes differ"):
        feature_l2(torch.zeros(1, 3, 2, 2), t)


@pytest.mark.parametrize("epochs,epoch,expected", [
    (50, 0, 1.0), (50, 16, 1.0), (50, 17, 0.5), (50, 33, 0.5), (50, 34, 0.0), (50, 49, 0.0),  # 17 / 17 / 16
    (9, 2, 1.0), (9, 3, 0.5), (9, 5, 0.5), (9, 6, 0.0),
    (2, 0, 1.0), (2, 1, 0.5),
])
def test_three_phase_alpha_boundaries(epochs, epoch, expected):
    assert alpha_at(Distill(schedule="three_phase"), epoch, epochs) == expected


def test_linear_and_constant_alpha():
    linear = Distill(alpha=0.9, schedule="linear", alpha_end=0.1)
    assert [alpha_at(linear, e, 5) for e in range(5)] == pytest.approx([0.9, 0.7, 0.5, 0.3, 0.1])
    assert alpha_at(Distill(alpha=0.3), 7, 10) == 0.3


def test_three_phase_weights_the_loss_terms_per_epoch():
    torch.manual_seed(0)
    student, teacher = build_model("lenet5bn", 4, 0.5), build_model("lenet5bn", 4, 0.5)
    x, y = torch.randn(6, 3, 32, 32), torch.tensor([0, 1, 2, 3, 0, 1])
    distiller = Distiller(student, teacher, Distill(method="logits", schedule="three_phase", temperature=2.0), epochs=3)
    distiller.train()
    torch.manual_seed(1)
    logits = student(x)  # BN in train mode: same batch, same output
    ce, kd = torch.nn.functional.cross_entropy(logits, y), kd_kl(logits, teacher.eval()(x), 2.0)
    for epoch, alpha in enumerate((1.0, 0.5, 0.0)):
        _, losses = distiller.forward_train(x, y, epoch)
        assert losses["ce"].item() == pytest.approx((1 - alpha) * ce.item(), rel=1e-5, abs=1e-7)
        assert losses["kd"].item() == pytest.approx(alpha * kd.item(), rel=1e-5, abs=1e-7)


def test_feature_kd_projects_student_features_onto_the_teachers():
    torch.manual_seed(0)
    student, teacher = build_model("lenet5bn", 10, 0.5), build_model("cifar_quick", 10, 1.0)
    distiller = Distiller(student, teacher, Distill(method="feature", alpha=1.0), epochs=1)
    # lenet5bn w0.5 ends with 25 channels at 5x5; cifar_quick with 64 at 4x4: 1x1 conv, then pooling.
    assert distiller.projector.conv.in_channels == 25 and distiller.projector.conv.out_channels == 64
    x, y = torch.randn(3, 3, 32, 32), torch.tensor([1, 2, 3])
    _, losses = distiller.forward_train(x, y, 0)
    projected = distiller.projector(student.forward_features(x)[1][-1])
    assert projected.shape == (3, 64, 4, 4)
    expected = feature_l2(projected, teacher.eval().forward_features(x)[1][-1])
    assert losses["kd"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert losses["ce"].item() == 0.0  # alpha = 1: the head gets no loss (seed 000's appendix)
    losses["kd"].backward()
    assert student.head[-1].weight.grad is None or not student.head[-1].weight.grad.any()
    assert distiller.projector.conv.weight.grad.abs().sum() > 0
    assert {n.split(".")[0] for n, _ in distiller.named_parameters()} == {"student", "projector"}


def test_fused_acb_teacher_gives_the_unfused_teachers_logits_and_losses():
    torch.manual_seed(0)
    teacher = randomise_bn(build_model("cifar_quick_deep", 10, 0.5, "acb"))
    fused = to_deploy(teacher)
    x, y = torch.randn(8, 3, 32, 32), torch.arange(8) % 10
    with torch.no_grad():
        a, b = teacher(x), fused(x)
    assert ((a - b).abs().max() / a.abs().max()).item() <= 1e-5
    spec = Distill(method="logits", alpha=0.5, temperature=4.0)
    student = build_model("cifar_quick", 10, 0.5).eval()
    losses = [Distiller(student, t, spec).eval().forward_train(x, y)[1]["kd"].item() for t in (teacher, fused)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


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
