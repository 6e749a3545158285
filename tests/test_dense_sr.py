"""Seed 002 Task 2.1 building blocks: the degradation, the SR metrics, the SR networks and the perceptual loss."""
import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from kdlib.dense import swinir
from kdlib.dense.attention_sr import AttentionSRNet
from kdlib.dense.degrade import blur, degrade, gaussian_kernel, upscale_bicubic
from kdlib.dense.edsr import EDSR
from kdlib.dense.image_metrics import psnr, rgb_to_y, sr_scores, ssim
from kdlib.dense.perceptual import LAYERS, VGGPerceptual, imagenet_weights_path
from kdlib.dense.registry import SR_MODELS as SR_TARGETS, resolve
from kdlib.dense.swinir import SwinIR, SwinLayer, shifted_window_mask
from kdlib.errors import KDError

SR_MODELS = {name: resolve(target) for name, target in SR_TARGETS.items()}

TINY = {"swinir": {"embed_dim": 16, "depths": (2,), "num_heads": 2, "window_size": 4},
        "edsr": {"channels": 8, "blocks": 2},
        "attention_srnet": {"channels": 8, "blocks": 2}}


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def conv(i: int, o: int, k: int) -> int:
    return i * o * k * k + o


# ---------------------------------------------------------------------------------------------------- degradation


def test_gaussian_kernel_matches_closed_form():
    sigma = 1.3
    radius = 4  # ceil(3 * 1.3)
    values = [math.exp(-x * x / (2 * sigma * sigma)) for x in range(-radius, radius + 1)]
    expected = torch.tensor([v / sum(values) for v in values])
    assert torch.allclose(gaussian_kernel(sigma), expected, atol=1e-7)
    assert gaussian_kernel(0.5).numel() == 5  # radius ceil(1.5) = 2


def test_blur_of_impulse_sums_to_one_with_variance_sigma_squared():
    sigma, size, c = 2.0, 41, 20
    impulse = torch.zeros(1, 1, size, size)
    impulse[0, 0, c, c] = 1.0
    out = blur(impulse, sigma)[0, 0].double()
    assert out.sum().item() == pytest.approx(1.0, abs=1e-6)
    offsets = torch.arange(size, dtype=torch.float64) - c
    rows, cols = out.sum(dim=1), out.sum(dim=0)
    assert (rows * offsets).sum().item() == pytest.approx(0.0, abs=1e-6)
    assert (cols * offsets).sum().item() == pytest.approx(0.0, abs=1e-6)
    # The kernel is cut at ceil(3 sigma), which removes ~1.3% of the variance of sigma 2.
    assert (rows * offsets ** 2).sum().item() == pytest.approx(sigma ** 2, rel=0.02)
    assert (cols * offsets ** 2).sum().item() == pytest.approx(sigma ** 2, rel=0.02)
    assert ((out * offsets[:, None] * offsets[None, :]).sum().item()) == pytest.approx(0.0, abs=1e-6)


def test_blur_sigma_zero_is_identity():
    x = torch.rand(1, 3, 8, 8)
    assert torch.equal(blur(x, 0), x)


def test_constant_image_stays_constant():
    hr = torch.full((1, 3, 16, 24), 0.3)
    assert torch.allclose(blur(hr, 1.5), hr, atol=1e-6)
    lr = degrade(hr, 4, 1.5)
    assert lr.shape == (1, 3, 4, 6)
    assert torch.allclose(lr, torch.full_like(lr, 0.3), atol=1e-6)
    assert torch.allclose(upscale_bicubic(lr, 4), hr, atol=1e-6)


def test_degrade_size_range_and_indivisible_size():
    checker = (torch.arange(24)[:, None] // 2 + torch.arange(16)[None, :] // 2) % 2
    hr = checker.float().expand(2, 3, 24, 16)
    lr = degrade(hr, 4, 0.0)  # bicubic overshoots on a 0/1 checkerboard; the output must still be in [0, 1]
    assert lr.shape == (2, 3, 6, 4)
    assert lr.min() >= 0 and lr.max() <= 1
    up = upscale_bicubic(lr, 4)
    assert up.shape == hr.shape and up.min() >= 0 and up.max() <= 1
    with pytest.raises(ValueError, match="24x16"):
        degrade(hr, 3, 1.0)


# ---------------------------------------------------------------------------------------------------- metrics


def test_psnr_known_values_and_border():
    torch.manual_seed(0)
    a = torch.randint(0, 255, (2, 3, 10, 10)).float() / 255
    assert psnr(a, a + 1 / 255, data_range=1.0) == pytest.approx(10 * math.log10(255 ** 2), abs=1e-4)  # 48.1308
    assert psnr(a, a, data_range=1.0) == math.inf
    # per-image PSNR averaged: MSE 1 and 4 (in 8-bit units)
    b = a.clone()
    b[0] += 1 / 255
    b[1] += 2 / 255
    expected = (10 * math.log10(255 ** 2) + 10 * math.log10(255 ** 2 / 4)) / 2
    assert psnr(a, b, data_range=1.0) == pytest.approx(expected, abs=1e-4)
    c = a.clone()
    c[..., 0, :] += 0.5  # only the first row differs: cropped away by border 1
    assert psnr(a, c, data_range=1.0, border=1) == math.inf
    assert psnr(a, c, data_range=1.0) < math.inf


def test_rgb_to_y_bt601():
    white, black, red = torch.ones(1, 3, 2, 2), torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2, 2)
    red[:, 0] = 1
    assert rgb_to_y(white).shape == (1, 1, 2, 2)
    assert torch.allclose(rgb_to_y(white), torch.tensor(235.0))
    assert torch.allclose(rgb_to_y(black), torch.tensor(16.0))
    assert torch.allclose(rgb_to_y(red), torch.tensor(16 + 65.481))


def test_ssim_matches_skimage():
    rng = np.random.default_rng(0)
    a = rng.random((3, 32, 40))
    b = np.clip(a + 0.2 * rng.standard_normal(a.shape), 0, 1)
    expected = [structural_similarity(a[i], b[i], gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                      data_range=1.0) for i in range(3)]
    ours = ssim(torch.from_numpy(a)[:, None], torch.from_numpy(b)[:, None], data_range=1.0)  # 3 images, 1 channel
    assert ours == pytest.approx(np.mean(expected), abs=1e-4)
    ours_rgb = ssim(torch.from_numpy(a)[None], torch.from_numpy(b)[None], data_range=1.0)  # 1 image, 3 channels
    assert ours_rgb == pytest.approx(np.mean(expected), abs=1e-4)
    one = ssim(torch.from_numpy(a[:1])[None] * 255, torch.from_numpy(b[:1])[None] * 255, data_range=255.0)
    assert one == pytest.approx(expected[0], abs=1e-4)
    assert ssim(torch.from_numpy(a)[None], torch.from_numpy(a)[None], data_range=1.0) == pytest.approx(1.0, abs=1e-9)


def test_sr_scores_quantise_and_golden_values():
    torch.manual_seed(0)
    hr = torch.randint(0, 255, (1, 3, 24, 24)).float() / 255
    same = sr_scores(hr + 0.4 / 255, hr, scale=2)  # rounds back to the same 8-bit image
    assert same["psnr_y"] == math.inf and same["psnr_rgb"] == math.inf
    assert same["ssim_y"] == pytest.approx(1.0, abs=1e-9)
    scores = sr_scores(hr + 1 / 255, hr, scale=2)
    # +1 in every channel moves Y by (65.481 + 128.553 + 24.966) / 255 = 219 / 255 levels
    assert scores["psnr_y"] == pytest.approx(20 * math.log10(255 / (219 / 255)), abs=1e-3)
    assert scores["psnr_rgb"] == pytest.approx(10 * math.log10(255 ** 2), abs=1e-3)
    assert set(scores) == {"psnr_y", "ssim_y", "psnr_rgb"}
    border_only = hr.clone()
    border_only[..., :4, :] = 1 - border_only[..., :4, :]
    assert sr_scores(border_only, hr, scale=4)["psnr_y"] == math.inf
    assert sr_scores(border_only, hr, scale=2)["psnr_y"] < 30


# ---------------------------------------------------------------------------------------------------- models


@pytest.mark.parametrize("name", sorted(SR_MODELS))
@pytest.mark.parametrize("scale", [2, 4])
def test_sr_model_shapes(name, scale):
    torch.manual_seed(0)
    model = SR_MODELS[name](scale=scale, **TINY[name]).eval()
    x = torch.rand(2, 3, 10, 14)  # not a multiple of SwinIR's window 4
    with torch.no_grad():
        image, features = model.forward_features(x)
        assert torch.equal(model(x), image)
    assert image.shape == (2, 3, 10 * scale, 14 * scale)
    assert features.shape == (2, model.feature_channels, 10, 14)
    assert isinstance(model.feature_channels, int)


def test_scale_three_and_bad_scale():
    model = AttentionSRNet(scale=3, channels=8, blocks=1)
    assert model(torch.rand(1, 3, 5, 6)).shape == (1, 3, 15, 18)
    with pytest.raises(ValueError, match="scale"):
        EDSR(scale=5)


@pytest.mark.parametrize("name", sorted(SR_MODELS))
def test_mean_is_added_back_and_output_unclamped(name):
    model = SR_MODELS[name](scale=2, **TINY[name])
    torch.nn.init.zeros_(model.conv_last.weight)
    torch.nn.init.zeros_(model.conv_last.bias)
    out = model(torch.rand(1, 3, 8, 8))
    mean = torch.tensor([0.4488, 0.4371, 0.4040]).view(1, 3, 1, 1)
    assert torch.allclose(out, mean.expand_as(out), atol=1e-7)
    torch.nn.init.constant_(model.conv_last.bias, 2.0)
    assert model(torch.rand(1, 3, 8, 8)).min() > 1  # not clamped


def test_shifted_window_mask_follows_swin_regions():
    h, w, ws, shift = 8, 12, 4, 2
    mask = shifted_window_mask(h, w, ws, shift)
    assert mask.shape == ((h // ws) * (w // ws), ws * ws, ws * ws)

    # Swin's construction: three bands per axis of the shifted image, [0, L-ws), [L-ws, L-shift), [L-shift, L).
    def band(i: int, length: int) -> int:
        return 0 if i < length - ws else 1 if i < length - shift else 2

    for win in range(mask.shape[0]):
        top, left = (win // (w // ws)) * ws, (win % (w // ws)) * ws
        for p in range(ws * ws):
            for q in range(ws * ws):
                rp, cp = top + p // ws, left + p % ws
                rq, cq = top + q // ws, left + q % ws
                same = band(rp, h) == band(rq, h) and band(cp, w) == band(cq, w)
                assert mask[win, p, q].item() == (0.0 if same else -100.0)
    assert (mask[0] == 0).all() and (mask[-1] == -100).any()


def test_shifted_window_attention_does_not_cross_the_wrap(monkeypatch):
    torch.manual_seed(0)
    layer = SwinLayer(dim=8, num_heads=2, window_size=4, shift=2, mlp_ratio=2.0).eval()
    x = torch.randn(1, 8, 8, 8)
    y = x.clone()
    y[0, 0, 0, 0] += 5.0  # one channel: LayerNorm would cancel a shift of the whole token
    # Shifted by -2, pixel (0, 0) lands at (6, 6): the bottom-right window, with original pixels (6..7, 0..1) on
    # each axis. (1, 1) is on its side of the wrap, (7, 7) across it, (3, 3) in another window.
    with torch.no_grad():
        diff = (layer(y) - layer(x)).abs().sum(dim=-1)[0]
    assert diff[1, 1] > 1e-3
    assert diff[7, 7] < 1e-6 and diff[3, 3] < 1e-6
    # Without the mask, the wrapped pixel would leak into (7, 7): the check above can fail.
    monkeypatch.setattr(swinir, "shifted_window_mask", lambda h, w, ws, s, device=None: torch.zeros(4, 16, 16))
    with torch.no_grad():
        assert (layer(y) - layer(x)).abs().sum(dim=-1)[0, 7, 7] > 1e-3


def test_swinir_parameter_count_by_hand():
    d, heads, ws, depth = 16, 2, 4, 2
    model = SwinIR(scale=4, embed_dim=d, depths=(depth,), num_heads=heads, window_size=ws)
    hidden = 2 * d  # mlp_ratio 2
    swin_layer = (2 * 2 * d  # two LayerNorms
                  + d * 3 * d + 3 * d + d * d + d  # qkv and projection
                  + (2 * ws - 1) ** 2 * heads  # relative position bias table
                  + d * hidden + hidden + hidden * d + d)  # MLP
    rstb = depth * swin_layer + conv(d, d, 3)
    expected = (conv(3, d, 3) + 2 * d + rstb + 2 * d + conv(d, d, 3)  # head, embed norm, body, norm, conv after
                + 2 * conv(d, 4 * d, 3) + conv(d, 3, 3))  # x2 x2 upsampler, conv out
    assert n_params(model) == expected


def test_attention_srnet_parameter_count_by_hand():
    c, blocks, hidden = 16, 12, 4  # SE reduction 4: 16 // 4 = 4
    block = 2 * conv(c, c, 3) + conv(c, hidden, 1) + conv(hidden, c, 1)
    expected = conv(3, c, 3) + blocks * block + conv(c, c, 3) + 2 * conv(c, 4 * c, 3) + conv(c, 3, 3)
    model = AttentionSRNet(scale=4, channels=c, blocks=blocks)
    assert n_params(model) == expected == 79219
    assert n_params(AttentionSRNet(channels=8, blocks=1)) == (conv(3, 8, 3) + 2 * conv(8, 8, 3) + conv(8, 4, 1)
                                                              + conv(4, 8, 1) + conv(8, 8, 3) + 2 * conv(8, 32, 3)
                                                              + conv(8, 3, 3))  # hidden 4 = the minimum


def test_edsr_baseline_parameter_count():
    c = 64
    expected = conv(3, c, 3) + 16 * 2 * conv(c, c, 3) + conv(c, c, 3) + 2 * conv(c, 4 * c, 3) + conv(c, 3, 3)
    assert n_params(EDSR()) == expected  # 1.52M, EDSR-baseline x4's published size


def test_dense_registry_and_checks_import_no_torch():
    import subprocess
    import sys
    code = ("import sys, kdlib.dense.registry, kdlib.dense.checks; "
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('kdlib'))")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_role_modules_and_entries_name_what_each_role_builds(tiny_raw):
    from kdlib.config import validate
    from kdlib.dense.registry import role_entries, role_modules
    dense = validate(tiny_raw).dense  # sr_tiny: SwinIR teacher, AttentionSRNet student
    assert role_modules(dense["sr_tiny"], "teacher") == ["kdlib.dense.swinir"]
    assert role_modules(dense["sr_tiny"], "scratch") == ["kdlib.dense.attention_sr"]
    assert role_modules(dense["sr_tiny"], "kd") == ["kdlib.dense.attention_sr", "kdlib.dense.swinir",
                                                    "kdlib.dense.perceptual"]
    assert role_entries(dense["sr_tiny"], "teacher") == ["SR_MODELS.swinir"]
    assert role_entries(dense["sr_tiny"], "scratch") == ["SR_MODELS.attention_srnet"]
    assert role_entries(dense["sr_tiny"], "kd") == ["SR_MODELS.attention_srnet", "SR_MODELS.swinir", "PERCEPTUAL"]
    for role in ("teacher", "scratch", "kd"):
        assert role_modules(dense["edges_tiny"], role) == ["kdlib.dense.edge_models"]
        assert role_entries(dense["edges_tiny"], role) == ["UNET"]
    with pytest.raises(KDError, match="unknown dense role"):
        role_modules(dense["sr_tiny"], "student")


def test_dense_stage_scripts_import_no_network_code():
    """Networks, the perceptual loss and U-Nets are built by string (kdlib.dense.registry): a dense stage's own
    imports reach none of them, so each role depends on its own networks only."""
    from kdlib.pipeline import code_deps
    networks = {"kdlib/dense/sr_base.py", "kdlib/dense/swinir.py", "kdlib/dense/edsr.py", "kdlib/dense/attention_sr.py",
                "kdlib/dense/edge_models.py", "kdlib/dense/perceptual.py", "kdlib/engine/trainer.py"}
    for script in ("stages/dense_train.py", "stages/dense_prepare.py"):
        assert not networks & set(code_deps(script)), script


# ---------------------------------------------------------------------------------------------------- perceptual


@pytest.fixture
def hub_dir(tmp_path):
    original = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path))
    yield tmp_path
    torch.hub.set_dir(original)


def test_vgg_random_is_reproducible_frozen_and_leaves_rng_alone(hub_dir):
    state = torch.get_rng_state()
    first = VGGPerceptual("random")
    assert torch.equal(torch.get_rng_state(), state)
    second = VGGPerceptual("random")
    for (key, p), q in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(p, q), key
    assert "random" in first.source
    assert len(first.features) == LAYERS["relu2_2"] + 1
    assert isinstance(first.features[-1], torch.nn.ReLU)
    assert not any(p.requires_grad for p in first.parameters())
    first.train()
    assert not any(m.training for m in first.modules())


def test_vgg_loss_zero_on_identity_positive_otherwise_and_differentiable(hub_dir):
    loss = VGGPerceptual("auto", layer="relu1_2")
    assert "random" in loss.source and str(hub_dir) in loss.source
    torch.manual_seed(0)
    a, b = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    assert loss(a, a).item() == 0.0
    a.requires_grad_(True)
    value = loss(a, b)
    assert value.item() > 0
    value.backward()
    assert a.grad is not None and a.grad.abs().sum() > 0


def test_vgg_imagenet_missing_file_names_the_path(hub_dir):
    path = imagenet_weights_path()
    assert path == str(hub_dir / "checkpoints" / "vgg16-397923af.pth")
    with pytest.raises(KDError) as error:
        VGGPerceptual("imagenet")
    assert path in str(error.value)


def test_vgg_imagenet_loads_the_local_file(hub_dir):
    reference = VGGPerceptual("random", layer="relu4_3")
    state = {f"features.{k}": torch.full_like(v, 0.01 * i) for i, (k, v) in
             enumerate(reference.features.state_dict().items())}
    state["classifier.0.weight"] = torch.zeros(2, 2)  # the real file has the classifier too: ignored
    (hub_dir / "checkpoints").mkdir()
    torch.save(state, imagenet_weights_path())
    for weights in ("imagenet", "auto"):
        loss = VGGPerceptual(weights, layer="relu2_2")
        assert loss.source == "VGG-16 ImageNet (torchvision IMAGENET1K_V1)"
        assert torch.equal(loss.features[7].bias, state["features.7.bias"])
    assert "random" in VGGPerceptual("random").source
