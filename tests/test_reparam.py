"""ACB blocks and their fusion: hand-computed kernels, and equivalence of fused and unfused forms."""
import itertools

import pytest
import torch
from torch import nn

from kdlib.models.build import build_model
from kdlib.models.registry import MODELS, PRETRAINED
from kdlib.reparam.acb import ACBlock, eligible, to_acb
from kdlib.reparam.fusion import fold_bn, fuse_branches, pad_to_square, to_deploy

FAMILIES = ["lenet5bn", "cifar_quick", "vgg_shallow", "resnet20", "wrn_16_2", "mobilenetv2"]


def randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Running statistics and affine parameters far from their initial values, so folding them matters."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) * 2 - 1)
            m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) * 2 - 1)
    return model.eval()


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / a.abs().max()).item()


def test_fold_bn_by_hand():
    w = torch.tensor([[[[1.0, 2.0]]], [[[3.0, 4.0]]]])  # two output channels, 1x2 kernels
    bn = nn.BatchNorm2d(2, eps=0.0)
    bn.running_mean.copy_(torch.tensor([1.0, -2.0]))
    bn.running_var.copy_(torch.tensor([4.0, 9.0]))  # sigma = 2, 3
    bn.weight.data.copy_(torch.tensor([3.0, 6.0]))   # gamma / sigma = 1.5, 2
    bn.bias.data.copy_(torch.tensor([0.5, 1.0]))
    weight, bias = fold_bn(w, bn)
    assert torch.equal(weight, torch.tensor([[[[1.5, 3.0]]], [[[6.0, 8.0]]]], dtype=torch.float64))
    # beta - mu * gamma / sigma: 0.5 - 1 * 1.5 = -1;  1 - (-2) * 2 = 5
    assert torch.equal(bias, torch.tensor([-1.0, 5.0], dtype=torch.float64))


def test_pad_to_square_places_kernels_in_the_centre():
    hor = torch.tensor([[[[1.0, 2.0, 3.0]]]])
    assert torch.equal(pad_to_square(hor, 3)[0, 0], torch.tensor([[0.0, 0, 0], [1, 2, 3], [0, 0, 0]]))
    assert torch.equal(pad_to_square(hor.transpose(2, 3), 3)[0, 0], torch.tensor([[0.0, 1, 0], [0, 2, 0], [0, 3, 0]]))
    five = pad_to_square(torch.ones(1, 1, 1, 5), 5)[0, 0]
    assert five.sum() == 5 and torch.equal(five[2], torch.ones(5))


def test_fuse_branches_sums_padded_kernels_and_biases():
    square = (torch.ones(1, 1, 3, 3), torch.tensor([1.0]))
    hor = (torch.full((1, 1, 1, 3), 2.0), torch.tensor([2.0]))
    ver = (torch.full((1, 1, 3, 1), 3.0), torch.tensor([3.0]))
    weight, bias = fuse_branches([square, hor, ver], 3)
    assert torch.equal(weight[0, 0], torch.tensor([[1.0, 4, 1], [3, 6, 3], [1, 4, 1]]))
    assert torch.equal(bias, torch.tensor([6.0]))


SWEEP = [(k, s, p, g, d) for k, s, p, g, d in itertools.product((3, 5), (1, 2), (0, 1, 2, 3), (1, 2), (1, 2))]


@pytest.mark.parametrize("kernel,stride,padding,groups,dilation", SWEEP)
def test_acb_block_fuses_to_one_equivalent_conv(kernel, stride, padding, groups, dilation):
    torch.manual_seed(kernel * 100 + stride * 10 + padding)
    conv = nn.Conv2d(4, 6, kernel, stride, padding, dilation=dilation, groups=groups, bias=False)
    block = randomise_bn(ACBlock(conv), seed=padding)
    x = torch.randn(2, 4, 15, 14)
    expected_shape = conv(x).shape[-2:]  # the ACB keeps the conv's geometry, even where rows must be cropped
    out = block(x)
    fused = to_deploy(nn.Sequential(block))[0]
    assert type(fused) is nn.Conv2d and fused.bias is not None
    geometry = ("stride", "padding", "dilation", "groups")
    assert [getattr(fused, g) for g in geometry] == [getattr(conv, g) for g in geometry]
    assert out.shape[-2:] == expected_shape
    assert relative_error(out, fused(x)) <= 1e-5


@pytest.mark.parametrize("name", FAMILIES)
def test_whole_model_fuses_to_the_same_function(name):
    torch.manual_seed(1)
    model = randomise_bn(build_model(name, 10, 0.5, "acb"), seed=3)
    blocks = sum(isinstance(m, ACBlock) for m in model.modules())
    assert blocks > 0
    deployed = to_deploy(model)
    assert not any(isinstance(m, ACBlock) for m in deployed.modules())
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert relative_error(model(x), deployed(x)) <= 1e-5
    # The deploy model is the registry architecture's inference form, loadable by name.
    plain = build_model(name, 10, 0.5, "base", deployed=True)
    plain.load_state_dict(deployed.state_dict())
    with torch.no_grad():
        assert torch.equal(plain.eval()(x), deployed(x))


def test_to_acb_converts_exactly_the_eligible_convs():
    base = build_model("mobilenetv2", 10, 0.5)
    convs = [m for m in base.modules() if isinstance(m, nn.Conv2d)]
    expected = sum(eligible(c) for c in convs)
    assert 0 < expected < len(convs)  # depthwise 3x3 convs qualify, 1x1 ones do not
    acb = to_acb(base)
    assert sum(isinstance(m, ACBlock) for m in acb.modules()) == expected
    before = {k: v.shape for k, v in acb.state_dict().items()}
    to_acb(acb)  # converting twice changes nothing
    assert {k: v.shape for k, v in acb.state_dict().items()} == before


def test_acb_takes_the_bn_after_the_conv_into_the_block():
    model = build_model("lenet5bn", 10, 1.0, "acb")
    first = model.stages[0][0]  # the first conv-BN-ReLU unit
    assert isinstance(first[0], ACBlock) and isinstance(first[1], nn.Identity) and isinstance(first[2], nn.ReLU)
    # Each branch has its own BN after its conv: 3x3-style square, 1xK and Kx1.
    assert [b[0].kernel_size for b in (first[0].square, first[0].hor, first[0].ver)] == [(5, 5), (1, 5), (5, 1)]
    # The branch BNs keep the replaced BN's settings (EfficientNet's eps is 1e-3, for one).
    unit = to_acb(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4, eps=1e-3, momentum=0.01)))
    assert {(b[1].eps, b[1].momentum) for b in (unit[0].square, unit[0].hor, unit[0].ver)} == {(1e-3, 0.01)}


def test_to_deploy_leaves_the_original_untouched_and_is_idempotent():
    model = randomise_bn(build_model("cifar_quick", 10, 0.5, "acb"))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    once = to_deploy(model)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert any(isinstance(m, ACBlock) for m in model.modules())
    twice = to_deploy(once)
    assert once is not twice and once.state_dict().keys() == twice.state_dict().keys()
    assert all(torch.equal(once.state_dict()[k], v) for k, v in twice.state_dict().items())


@pytest.mark.parametrize("name", ["lenet5bn", "vgg_shallow", "cifar_quick"])
def test_deploy_form_swaps_each_bn_for_a_conv_bias(name):
    # Every conv of these models is an eligible conv followed by BN: folding drops the BN's weight and
    # bias (2 per channel) and adds a conv bias (1 per channel).
    plain, deployed = build_model(name, 10, 0.5), build_model(name, 10, 0.5, deployed=True)
    channels = sum(m.out_channels for m in plain.modules() if isinstance(m, nn.Conv2d))
    assert sum(p.numel() for p in deployed.parameters()) == sum(p.numel() for p in plain.parameters()) - channels
    assert not any(isinstance(m, nn.BatchNorm2d) for m in deployed.modules())


def test_every_registry_model_builds_in_all_three_forms():
    for name in sorted(set(MODELS) - {"resnet101", "efficientnetv2_l"}):  # the big ones take seconds each
        width = 1.0 if name in PRETRAINED else 0.25
        for form in ({}, {"block_type": "acb"}, {"deployed": True}):
            out = build_model(name, 7, width, **form).eval()(torch.randn(1, 3, 32, 32))
            assert out.shape == (1, 7)
