"""The registry: every model builds, runs, exposes stages/head/features, and has the published size."""
import pytest
import torch

from kdlib.errors import KDError
from kdlib.models.build import build_model
from kdlib.models.registry import MODELS, PRETRAINED

HEAVY = {"resnet101", "efficientnetv2_l"}  # built, but not run through every test (seconds each)


@pytest.mark.parametrize("name", sorted(set(MODELS) - HEAVY))
def test_stages_head_and_features(name):
    model = build_model(name, num_classes=7).eval()
    x = torch.randn(2, 3, 32, 32)
    logits, features = model.forward_features(x)
    assert logits.shape == (2, 7)
    assert torch.equal(logits, model(x))
    assert len(features) == len(model.stages) >= 2
    assert [tuple(f.shape[1:]) for f in features] == model.stage_shapes()
    assert torch.equal(model.head(features[-1]), logits)


# Parameter counts (100 classes) as published for the CIFAR versions of these networks.
PUBLISHED = {"resnet20": 0.28e6, "resnet56": 0.86e6, "resnet8x4": 1.23e6, "resnet32x4": 7.43e6,
             "wrn_16_2": 0.70e6, "wrn_40_2": 2.26e6, "vgg16": 14.8e6}


@pytest.mark.parametrize("name,count", PUBLISHED.items())
def test_parameter_counts_match_published(name, count):
    params = sum(p.numel() for p in build_model(name, 100).parameters())
    assert params == pytest.approx(count, rel=0.02)


def _convs(model):
    return sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())


@pytest.mark.parametrize("base", ["lenet5bn", "cifar_quick"])
def test_deep_variants_double_the_conv_layers(base):
    assert _convs(build_model(f"{base}_deep", 10)) == 2 * _convs(build_model(base, 10))


def test_vgg_depths():
    assert _convs(build_model("vgg16", 10)) == 13 and _convs(build_model("vgg_shallow", 10)) == 5


def test_width_multiplier_scales_channels():
    narrow, full = build_model("mobilenetv2", 10, width=0.5), build_model("mobilenetv2", 10)
    assert narrow.stage_shapes()[1][0] == 16 and full.stage_shapes()[1][0] == 32
    assert build_model("resnet20", 10, width=2).stage_shapes()[-1] == (128, 8, 8)


def _size(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet101"])
def test_torchvision_resnets_get_a_cifar_stem(name):
    import torchvision.models as tvm
    ours, theirs = build_model(name, 10), tvm.get_model(name, num_classes=10)
    # The same network but the first conv: 3x3 instead of 7x7 (64 filters on 3 channels); no max-pool.
    assert _size(ours) == _size(theirs) - 64 * 3 * (49 - 9)
    assert ours.stage_shapes()[0][1:] == (32, 32) and not any(isinstance(m, torch.nn.MaxPool2d) for m in ours.modules())


@pytest.mark.parametrize("name,tv_name", [("efficientnetv2_s", "efficientnet_v2_s"), ("efficientnetv2_l", "efficientnet_v2_l")])
def test_torchvision_efficientnets_keep_every_weight(name, tv_name):
    import torchvision.models as tvm
    ours, theirs = build_model(name, 100), tvm.get_model(tv_name, num_classes=100)
    assert _size(ours) == _size(theirs)  # only the stem's stride changes
    assert ours.stages[0][0][0].stride == (1, 1)


def test_pretrained_offline_is_one_clear_error(monkeypatch):
    import urllib.error

    import torch.hub

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(KDError, match=r"model 'resnet18': pretrained weights .* cannot be downloaded .*"
                                      r"set 'pretrained: false'"):
        build_model("resnet18", 10, pretrained=True)
    with pytest.raises(KDError, match="model 'lenet5bn' has no published weights"):
        build_model("lenet5bn", 10, pretrained=True)
    with pytest.raises(KDError, match="model 'resnet34' has a fixed width"):
        build_model("resnet34", 10, width=0.5)
    assert PRETRAINED == {"resnet18", "resnet34", "resnet101", "efficientnetv2_s", "efficientnetv2_l"}
