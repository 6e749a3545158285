"""Seed 003's other baselines, ST, NST and ReviewKD: golden values of their losses computed by hand, and one
training step of each through the Distiller."""
import math

import pytest
import torch
import torch.nn.functional as F

from kdlib.config import Distill
from kdlib.distill.distiller import Distiller
from kdlib.distill.kd import kd_kl
from kdlib.distill.nst import nst_mmd
from kdlib.distill.reviewkd import Review, hcl
from kdlib.distill.st import gradient_gap, input_gradient
from kdlib.errors import KDError
from kdlib.models.build import build_model


def test_nst_mmd_golden_value():
    # Student channels [1, 0] and [1, 1] (unit: [.7071, .7071]), teacher channel [0, 3] (unit: [0, 1]).
    # Kernel (a.b)^2. Student pairs: 1, .5, .5, 1 -> mean .75; teacher: 1; cross: 0, .5 -> mean .25.
    # MMD^2 = .75 + 1 - 2 * .25 = 1.25; scaling a channel changes nothing (each is normalised).
    student = torch.tensor([[[[1.0, 0.0]], [[2.0, 2.0]]]])  # (1, 2, 1, 2)
    teacher = torch.tensor([[[[0.0, 3.0]]]])  # (1, 1, 1, 2)
    assert nst_mmd(student, teacher).item() == pytest.approx(1.25, rel=1e-6)
    assert nst_mmd(teacher, teacher).item() == pytest.approx(0.0, abs=1e-7)
    assert nst_mmd(torch.cat([student, student]), torch.cat([teacher, teacher])).item() == pytest.approx(1.25)


def test_hcl_golden_values():
    # 4x4 maps, teacher 2 on the left half, student 0: full size MSE 2; the 4x4 level is skipped (not smaller
    # than the map); 2x2 pooled MSE 2 at weight 1/2; 1x1 (mean 1) MSE 1 at weight 1/4: (2 + 1 + .25) / 1.75.
    teacher = torch.zeros(1, 1, 4, 4)
    teacher[..., :2] = 2
    assert hcl([torch.zeros_like(teacher)], [teacher]).item() == pytest.approx(3.25 / 1.75, rel=1e-6)
    # 8x8, teacher 1 on the left half: full, 4x4 and 2x2 MSE .5, 1x1 .25, weights 1, 1/2, 1/4, 1/8.
    wide = torch.zeros(1, 1, 8, 8)
    wide[..., :4] = 1
    expected = (0.5 + 0.5 / 2 + 0.5 / 4 + 0.25 / 8) / (1 + 1 / 2 + 1 / 4 + 1 / 8)
    both = hcl([torch.zeros_like(teacher), torch.zeros_like(wide)], [teacher, wide]).item()
    assert both == pytest.approx(3.25 / 1.75 + expected, rel=1e-6)


def test_review_fuses_deeper_stages_into_each_teacher_stage():
    torch.manual_seed(0)
    review = Review([8, 16], [4, 32]).eval()
    shallow, deep = torch.randn(2, 8, 8, 8), torch.randn(2, 16, 4, 4)
    out_shallow, out_deep = review([shallow, deep])
    assert out_shallow.shape == (2, 4, 8, 8) and out_deep.shape == (2, 32, 4, 4)
    # The deepest stage has nothing below it; the shallow one blends in the deep one's reduced feature: with the
    # attention saturated towards its own feature, the deep stage's influence vanishes.
    fusion = review.fusions[0]
    with torch.no_grad():
        fusion.attention[0].weight.zero_()
        fusion.attention[0].bias.copy_(torch.tensor([50.0, -50.0]))
    alone = fusion.out(fusion.reduce(shallow))
    assert torch.allclose(review([shallow, deep])[0], alone, atol=1e-5)


def test_input_gradient_golden_value():
    # z = W x / T for a linear net: d/dx <v, log softmax(z)> = W^T (v - p sum(v)) / T, p = softmax(z).
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 4, bias=False)
    x = torch.randn(2, 3, requires_grad=True)
    v, temperature = torch.randn(2, 4), 2.0
    grad = input_gradient(net(x), x, v, temperature, create_graph=False)
    p = F.softmax(net(x).detach() / temperature, dim=1)
    expected = (v - p * v.sum(1, keepdim=True)) @ net.weight.detach() / temperature
    assert torch.allclose(grad, expected, atol=1e-6)
    # ||g_S - g_T||^2 per input element: rows differ by (1, 2, 2) and (0, 0, 3): (9 + 9) / 6 elements.
    assert gradient_gap(torch.tensor([[1.0, 2, 2], [0, 0, 3]]), torch.zeros(2, 3)).item() == pytest.approx(3.0)


def test_st_terms_by_hand_and_gradients_reach_the_student():
    torch.manual_seed(0)
    student, teacher = torch.nn.Linear(3, 4), torch.nn.Linear(3, 4)
    x, y = torch.randn(5, 3), torch.tensor([0, 1, 2, 3, 0])
    spec = Distill(method="st", alpha=0.5, beta=2.0)
    torch.manual_seed(1)
    logits, losses = Distiller(student, teacher, spec).forward_train(x, y)
    torch.manual_seed(1)
    v = torch.randn(5, 4)  # the direction the method draws first
    xg = x.clone().requires_grad_(True)
    g_s = input_gradient(student(xg), xg, v, 4.0, create_graph=False)
    g_t = input_gradient(teacher(xg), xg, v, 4.0, create_graph=False)
    assert losses["ce"].item() == pytest.approx(0.5 * F.cross_entropy(student(x), y).item(), rel=1e-6)
    assert losses["kd"].item() == pytest.approx(0.5 * kd_kl(student(x), teacher(x), 4.0).item(), rel=1e-6)
    assert losses["sobolev"].item() == pytest.approx(0.5 * 2.0 * gradient_gap(g_s, g_t).item(), rel=1e-5)
    # The gradient term trains the student through the second-order graph: alone it moves the weights.
    student.zero_grad()
    losses["sobolev"].backward()
    assert student.weight.grad.abs().sum() > 0 and teacher.weight.grad is None


@pytest.mark.parametrize("method", ["st", "nst", "reviewkd"])
def test_one_training_step_through_the_distiller(method):
    torch.manual_seed(0)
    teacher = build_model("cifar_quick_deep", 10, width=0.25)
    student = build_model("cifar_quick", 10, width=0.25)
    d = Distiller(student, teacher, Distill(method=method), epochs=12, input_shape=(3, 16, 16))
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    logits, losses = d.forward_train(x, y)
    assert logits.shape == (4, 10) and all(math.isfinite(v.item()) for v in losses.values())
    assert set(losses) == {"st": {"ce", "kd", "sobolev"}, "nst": {"ce", "nst"}, "reviewkd": {"ce", "review"}}[method]
    sum(losses.values()).backward()
    trained = [p for p in d.parameters() if p.grad is not None]
    assert trained and all(p.grad is not None for p in student.parameters())
    if method == "reviewkd":  # the fusions train with the student and are not part of the deployed network
        assert all(p.grad is not None for p in d.projector.parameters()) and d.deployable() is student


def test_stage_pairing_methods_refuse_different_feature_sizes():
    teacher = build_model("cifar_quick_deep", 10, width=0.25)
    student = build_model("lenet5bn", 10, width=0.25)
    with pytest.raises(KDError, match="NST pairs stage with stage at equal feature sizes"):
        Distiller(student, teacher, Distill(method="nst"), input_shape=(3, 16, 16))
