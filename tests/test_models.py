"""The registry: every model builds, runs, exposes stages/head/features, and has the published size."""
import importlib
import inspect

import pytest
import torch

from kdlib.errors import KDError
from kdlib.models.build import build_model
from kdlib.models.registry import MODELS, PRETRAINED

HEAVY = {"resnet101", "efficientnetv2_l", "swin_s", "swin_t_224", "swin_s_224"}  # built, not run by every test


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


def test_transformers_at_the_seeds_sizes():
    """Seed 003's transformers: ViT-T at 32x32 has as many parameters as timm's own ViT of that configuration
    (patch 4, 192 channels, 3 heads, mean-token classifier); Swin-T and Swin-S in their ImageNet configuration
    have the published counts (28.3M and 49.6M with 1000 classes); layers per stage as the seed decomposes them."""
    from timm.models.vision_transformer import VisionTransformer
    count = lambda m: sum(p.numel() for p in m.parameters())
    reference = VisionTransformer(img_size=32, patch_size=4, embed_dim=192, depth=12, num_heads=3, class_token=False,
                                  global_pool="avg", num_classes=100)
    assert count(build_model("vit_t", 100)) == count(reference) == 5_379_748
    assert count(build_model("swin_t_224", 1000)) == 28_288_354
    assert count(build_model("swin_s_224", 1000)) == 49_606_258
    layers = lambda name: [sum(type(m).__name__ in ("Block", "SwinTransformerBlock") for m in stage.modules())
                           for stage in build_model(name, 10).stages]
    assert layers("vit_t") == [3, 3, 3, 3] and layers("vit_t_d8") == [2, 2, 2, 2]
    assert layers("swin_t") == [2, 2, 6, 2] and layers("swin_s") == [2, 2, 18, 2]


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
    for name, target in MODELS.items():  # exactly the constructors that take `pretrained` are listed
        module, function = target.split(":")
        signature = inspect.signature(getattr(importlib.import_module(module), function))
        assert ("pretrained" in signature.parameters) == (name in PRETRAINED), name
