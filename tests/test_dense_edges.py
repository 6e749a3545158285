"""Seed 002 Task 2.2 building blocks: edge data (shape scenes, BSDS500), edge metrics, losses and the U-Nets."""
import math
import time

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import loadmat, savemat
from skimage.segmentation import find_boundaries

from kdlib.dense import edge_models
from kdlib.dense.edge_data import boundaries, load_bsds500, shape_scenes
from kdlib.dense.edge_metrics import dice, ods_f
from kdlib.dense.edge_models import unet
from kdlib.dense.losses import edge_distillation, soft_mse, weighted_bce
from kdlib.errors import KDError


def expected_boundaries(labels: np.ndarray) -> np.ndarray:
    """Independent route: skimage's subpixel boundaries mark the half-pixel position between two pixels of
    different labels, (2i, 2j+1) between (i, j) and (i, j+1), (2i+1, 2j) between (i, j) and (i+1, j)."""
    out = np.zeros(labels.shape, dtype=bool)
    for i, lab in enumerate(labels):
        sub = find_boundaries(lab, mode="subpixel")
        out[i, :, :-1] |= sub[::2, 1::2]
        out[i, :-1, :] |= sub[1::2, ::2]
    return out


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------------------------------- edge data
def test_boundaries_by_hand_and_against_skimage():
    labels = torch.tensor([[[0, 0, 1],
                            [0, 0, 1],
                            [2, 2, 2]]])
    assert boundaries(labels).int().tolist() == [[[0, 1, 0],
                                                  [1, 1, 1],
                                                  [0, 0, 0]]]
    random = torch.from_numpy(np.random.default_rng(0).integers(0, 3, (4, 9, 11)))
    assert torch.equal(boundaries(random), torch.from_numpy(expected_boundaries(random.numpy())))


@pytest.fixture(scope="module")
def scenes():
    return shape_scenes(12, 64, seed=3)


def test_scene_edges_are_exactly_the_label_boundaries(scenes):
    images, labels, edges = scenes
    assert images.shape == (12, 3, 64, 64) and images.dtype == torch.uint8
    assert labels.shape == edges.shape == (12, 64, 64) and labels.dtype == torch.int64 and edges.dtype == torch.bool
    assert torch.equal(edges, torch.from_numpy(expected_boundaries(labels.numpy())))
    # An edge pixel always has a right or lower neighbour of another label, and only edge pixels do.
    right = torch.zeros_like(edges)
    right[..., :-1] = labels[..., :-1] != labels[..., 1:]
    down = torch.zeros_like(edges)
    down[..., :-1, :] = labels[..., :-1, :] != labels[..., 1:, :]
    assert torch.equal(edges, right | down)
    for lab in labels:
        assert (lab == 0).any() and 1 <= lab.max() <= 4  # background plus up to 4 painted shapes


def test_scene_edge_share_and_texture_distractors(scenes):
    images, labels, edges = scenes
    share = edges.float().mean((1, 2))
    assert 0.025 < share.mean() < 0.065  # about 4.7% at 64 x 64 over 300 scenes
    assert ((share > 0.005) & (share < 0.12)).all()
    # Photo textures have strong gradients inside regions; they must not be edges.
    jump = (images[..., :, 1:].int() - images[..., :, :-1].int()).abs().amax(1) > 40
    same_region = labels[..., :, 1:] == labels[..., :, :-1]
    assert (jump & same_region).sum() > 0.5 * edges.sum()


def test_scenes_are_seeded(scenes):
    again = shape_scenes(12, 64, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(scenes, again))
    other = shape_scenes(12, 64, seed=4)
    assert not torch.equal(scenes[0], other[0]) and not torch.equal(scenes[2], other[2])


def bsds_truth(path, boundary_maps: list[np.ndarray]) -> None:
    """A groundTruth .mat as BSDS500 stores it: a 1 x K cell of 1 x 1 structs (Segmentation, Boundaries)."""
    cell = np.empty((1, len(boundary_maps)), dtype=object)
    for k, bnd in enumerate(boundary_maps):
        record = np.empty((1, 1), dtype=[("Segmentation", object), ("Boundaries", object)])
        record[0, 0]["Segmentation"] = np.ones(bnd.shape, dtype=np.uint16)
        record[0, 0]["Boundaries"] = bnd.astype(np.uint8)
        cell[0, k] = record
    savemat(path, {"groundTruth": cell})


@pytest.fixture
def bsds(tmp_path):
    (tmp_path / "images" / "val").mkdir(parents=True)
    (tmp_path / "groundTruth" / "val").mkdir(parents=True)
    both, one = np.zeros((20, 30)), np.zeros((20, 30))
    both[5, :] = 1   # both annotators: row 5
    one[:, 10] = 1   # the first only: column 10
    for stem, colour in (("a", (200, 40, 40)), ("b", (30, 90, 220))):
        Image.fromarray(np.full((20, 30, 3), colour, dtype=np.uint8)).save(tmp_path / "images" / "val" / f"{stem}.jpg")
        bsds_truth(tmp_path / "groundTruth" / "val" / f"{stem}.mat", [both + one, both])
    return tmp_path


def test_bsds_fixture_has_the_real_nesting(bsds):
    cells = loadmat(bsds / "groundTruth" / "val" / "a.mat")["groundTruth"]
    assert cells.shape == (1, 2) and cells[0, 1]["Boundaries"][0, 0].shape == (20, 30)


def test_load_bsds500_agreement_and_resize(bsds):
    images, edges = load_bsds500(bsds, "val", 10, agreement=0.5)
    assert images.shape == (2, 3, 10, 10) and images.dtype == torch.uint8 and edges.shape == (2, 10, 10)
    assert (images[1].float().mean((1, 2)) - torch.tensor([30.0, 90.0, 220.0])).abs().max() < 6  # sorted, b second
    # Adaptive max pooling from 20 x 30 to 10 x 10: output row i covers rows 2i..2i+1, column j columns 3j..3j+2,
    # so row 5 lands in output row 2 and column 10 in output column 3.
    expected = torch.zeros(10, 10, dtype=torch.bool)
    expected[2, :] = True
    expected[:, 3] = True
    assert torch.equal(edges[0], expected) and torch.equal(edges[1], expected)
    _, unanimous = load_bsds500(bsds, "val", 10, agreement=1.0)
    assert unanimous[0].nonzero()[:, 0].unique().tolist() == [2]


def test_load_bsds500_errors_name_the_path(bsds):
    with pytest.raises(KDError, match="images/test"):
        load_bsds500(bsds, "test", 16)
    (bsds / "groundTruth" / "val" / "b.mat").write_bytes(b"not a MATLAB file")
    with pytest.raises(KDError, match="b.mat: not a readable"):
        load_bsds500(bsds, "val", 16)
    (bsds / "groundTruth" / "val" / "b.mat").unlink()
    with pytest.raises(KDError, match="b.mat: missing"):
        load_bsds500(bsds, "val", 16)


# ---------------------------------------------------------------------------------------------------- losses
def test_weighted_bce_and_soft_mse_golden_values():
    # logit 0 with an edge: -10 ln sigmoid(0) = 10 ln 2; logit ln 3, no edge: -ln(1 - 3/4) = ln 4.
    logits, target = torch.tensor([0.0, math.log(3)]), torch.tensor([True, False])
    assert weighted_bce(logits, target, 10.0).item() == pytest.approx((10 * math.log(2) + math.log(4)) / 2)
    assert weighted_bce(logits, target, 1.0).item() == pytest.approx((math.log(2) + math.log(4)) / 2)
    # sigmoids (1/2, 3/4) against (3/4, 1/4): differences -1/4 and 1/2.
    teacher = torch.tensor([math.log(3), -math.log(3)])
    assert soft_mse(logits, teacher).item() == pytest.approx((1 / 16 + 1 / 4) / 2)


def test_edge_distillation_weighs_by_alpha():
    logits, teacher = torch.tensor([0.0, math.log(3)]), torch.tensor([math.log(3), -math.log(3)])
    target = torch.tensor([1.0, 0.0])
    terms = edge_distillation(logits, teacher, target, alpha=0.25, pos_weight=10.0)
    assert set(terms) == {"bce", "soft"}
    assert terms["bce"].item() == pytest.approx(0.75 * 6 * math.log(2))
    assert terms["soft"].item() == pytest.approx(0.25 * 0.15625)


# ---------------------------------------------------------------------------------------------------- metrics
def test_dice_by_hand():
    # Image 0: P = {(0,0), (0,1), (1,0)}, G = {(0,0), (0,1), (1,1)}: 2 * 2 / (3 + 3). Image 1: both empty -> 1.
    prob = torch.tensor([[[0.9, 0.8], [0.7, 0.5]], [[0.5, 0.1], [0.0, 0.2]]])
    target = torch.tensor([[[1, 1], [0, 1]], [[0, 0], [0, 0]]]).bool()
    assert dice(prob, target) == pytest.approx((2 / 3 + 1) / 2)
    assert dice(prob[:, None], target[:, None]) == pytest.approx((2 / 3 + 1) / 2)
    assert dice(prob[1:], torch.ones(1, 2, 2, dtype=torch.bool)) == 0.0
    assert dice(prob[:1], target[:1], threshold=0.75) == pytest.approx(2 * 2 / (2 + 3))  # P = {(0,0), (0,1)}


def test_ods_f_tolerance_and_threshold():
    truth = torch.zeros(1, 8, 8, dtype=torch.bool)
    truth[0, :, 3] = True
    prob = torch.zeros(1, 8, 8)
    prob[0, :4, 3] = 0.9  # rows 0-3 on the edge, rows 4-7 one pixel to its right
    prob[0, 4:, 4] = 0.9
    prob[0, 7, 7] = 0.255  # a faint false edge, dropped from threshold 0.26 on
    at1 = ods_f(prob, truth, tolerance=1)
    assert at1["f"] == pytest.approx(1.0) and at1["threshold"] == pytest.approx(0.26)
    at0 = ods_f(prob, truth, tolerance=0)
    assert at0["f"] == pytest.approx(0.5) and at0["precision"] == pytest.approx(0.5)
    assert at0["recall"] == pytest.approx(0.5) and at0["threshold"] == pytest.approx(0.26)
    # Below 0.26 the faint pixel counts: precision 8/9, recall 1.
    low = ods_f(prob, truth, tolerance=1, thresholds=2)  # thresholds 0.01 and 0.99
    assert low["threshold"] == pytest.approx(0.01) and low["f"] == pytest.approx(2 * (8 / 9) / (8 / 9 + 1))


def test_ods_f_pools_counts_over_the_set():
    # Image 0 found perfectly (8 edge pixels), image 1's 2 edge pixels missed: R = 8/10, P = 1 over the set,
    # where a mean of per-image F would be (1 + 0) / 2.
    truth = torch.zeros(2, 1, 8, 8, dtype=torch.bool)
    truth[0, 0, :, 3] = True
    truth[1, 0, 2, 2:4] = True
    prob = truth[:1].float().repeat(2, 1, 1, 1)
    prob[1] = 0
    assert ods_f(prob, truth)["f"] == pytest.approx(2 * 0.8 / 1.8)


# ---------------------------------------------------------------------------------------------------- U-Nets
def test_unets_map_images_to_logits_and_the_student_is_smaller():
    torch.manual_seed(0)
    counts = {}
    for decoder in ((256, 128, 64, 32, 16), (64, 32, 16, 8, 4)):
        for encoder in ("resnet34", "mobilenet_v2"):
            model = unet(encoder, decoder_channels=decoder).eval()
            counts[encoder, decoder] = n_params(model)
            if decoder[0] == 64:
                with torch.no_grad():
                    assert model(torch.rand(1, 3, 64, 64)).shape == (1, 1, 64, 64)
        assert counts["mobilenet_v2", decoder] < 0.5 * counts["resnet34", decoder]
    assert counts["resnet34", (256, 128, 64, 32, 16)] > counts["resnet34", (64, 32, 16, 8, 4)]


def test_unet_rejects_unknown_encoders_and_weights():
    with pytest.raises(KDError, match="unknown U-Net encoder 'mobilenetv2'.*mobilenet_v2"):
        unet("mobilenetv2")
    with pytest.raises(KDError, match="no weights 'ssl'"):
        unet("resnet34", "ssl")


def fake_hub_cache(cache, encoder: str, weights: str, state: dict[str, torch.Tensor]) -> None:
    """Put `state` where huggingface_hub looks for smp's pretrained encoder files."""
    import segmentation_models_pytorch as smp
    from safetensors.torch import save_file
    settings = smp.encoders.encoders[encoder]["pretrained_settings"][weights]
    snapshot = cache / f"models--{settings['repo_id'].replace('/', '--')}" / "snapshots" / settings["revision"]
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    save_file({k: v.contiguous() for k, v in state.items()}, snapshot / "model.safetensors")


def test_unet_weights_come_from_the_cache_without_network(tmp_path, monkeypatch):
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(edge_models, "_hub_reachable", lambda: pytest.fail("cached weights need no network"))
    torch.manual_seed(1)
    state = unet("mobilenet_v2").encoder.state_dict()
    fake_hub_cache(tmp_path, "mobilenet_v2", "imagenet", state)
    loaded = unet("mobilenet_v2", "imagenet").encoder.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


def test_unet_missing_weights_fail_fast(tmp_path, monkeypatch):
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # empty: nothing cached
    monkeypatch.setattr(edge_models, "_hub_reachable", lambda: False)
    start = time.perf_counter()
    with pytest.raises(KDError, match="could not load 'imagenet' weights .*encoder_weights: null"):
        unet("mobilenet_v2", "imagenet")
    assert time.perf_counter() - start < 10  # huggingface_hub's own retries take about 25 s
