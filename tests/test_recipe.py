"""Seed 001's recipe options: mixed-sample KD against hand-computed values, Mixup/CutMix label mixing,
the augmentation pipeline and mixed precision."""
import math

import pytest
import torch
from torch import nn

from kdlib.config import Augment, ColorJitter, Distill, Mix, RandomErasing
from kdlib.data.mixing import batch_mixer
from kdlib.data.prepared import AugmentedSet, DatasetFiles, train_loader
from kdlib.data.splits import Split
from kdlib.distill.distiller import Distiller
from kdlib.engine.precision import autocast
from kdlib.errors import KDError

LN2 = math.log(2)


def fixed_pair():
    """Student = identity, so its logits are the input; teacher adds ln 2 to the last logit."""
    teacher = nn.Linear(3, 3)
    with torch.no_grad():
        teacher.weight.copy_(torch.eye(3))
        teacher.bias.copy_(torch.tensor([0.0, 0.0, LN2]))
    return nn.Identity(), teacher


@pytest.mark.parametrize("smoothing,ce_in_ln2", [(0.0, 1.4), (0.1, 0.9 * 1.4 + 0.1 * (1 + 2 + 2) / 3)])
def test_mixed_sample_kd_loss_by_hand(smoothing, ce_in_ln2):
    # A mixed image whose student logits are [ln 2, 0, 0]: p_s = (1/2, 1/4, 1/4). Its label is 60 % class 0,
    # 40 % class 1, so CE = -(.6 ln 1/2 + .4 ln 1/4) = 1.4 ln 2; smoothing by e mixes in e * (uniform CE)
    # = e * (ln 2 + 2 ln 2 + 2 ln 2) / 3. The teacher sees the same mixed image: logits [ln 2, 0, ln 2],
    # p_t = (2/5, 1/5, 2/5), so KL(p_t || p_s) = .4 ln .8 + .2 ln .8 + .4 ln 1.6 at T = 1.
    student, teacher = fixed_pair()
    x = torch.tensor([[LN2, 0.0, 0.0]])
    y = torch.tensor([[0.6, 0.4, 0.0]])
    distiller = Distiller(student, teacher, Distill(alpha=0.7, temperature=1.0), label_smoothing=smoothing)
    _, losses = distiller.forward_train(x, y)
    kl = 0.4 * math.log(0.8) + 0.2 * math.log(0.8) + 0.4 * math.log(1.6)
    assert losses["ce"].item() == pytest.approx(0.3 * ce_in_ln2 * LN2, rel=1e-6)
    assert losses["kd"].item() == pytest.approx(0.7 * kl, rel=1e-6)


def test_mixed_labels_follow_the_pasted_area_and_the_blend():
    # Image i is the constant i, so each output pixel tells which image it came from.
    torch.manual_seed(0)
    n, classes = 4, 4
    images = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, 16, 16).clone()
    labels = torch.arange(n)
    mixer = batch_mixer(Mix(mixup_alpha=0.8, cutmix_alpha=1.0), classes)
    kinds = set()
    for _ in range(40):
        mixed, soft = mixer(images.clone(), labels.clone())
        assert torch.allclose(soft.sum(1), torch.ones(n))
        for i in range(n):
            own = soft[i, i].item()
            values = mixed[i].unique()
            if len(values) == 1 and values.item() not in (float(i),):  # Mixup: one blended value
                kinds.add("mixup")
                partner = soft[i].clone()
                partner[i] = 0
                j = int(partner.argmax()) if partner.sum() > 0 else i
                assert mixed[i, 0, 0, 0].item() == pytest.approx(own * i + (1 - own) * j, abs=1e-5)
            else:  # CutMix (or lambda = 1): lambda is the share of pixels left unpasted
                kinds.add("cutmix")
                assert own == pytest.approx((mixed[i] == float(i)).float().mean().item(), abs=1e-6)
    assert kinds == {"mixup", "cutmix"}  # both chosen, per batch


def test_augmentations_run_in_order_and_are_seeded():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8, generator=g)
    meta = {"image_size": 32, "mean": [0.5] * 3, "std": [0.25] * 3}
    augment = Augment(crop_padding=4, hflip=True, autoaugment=True,
                      color_jitter=ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2),
                      random_erasing=RandomErasing(p=1.0, scale=[0.1, 0.2]))
    data = AugmentedSet(Split(images, torch.arange(4)), meta, augment)
    torch.manual_seed(1)
    first = torch.stack([data[i][0] for i in range(4)])
    torch.manual_seed(1)
    again = torch.stack([data[i][0] for i in range(4)])
    assert torch.equal(first, again) and first.dtype == torch.float32 and first.shape == (4, 3, 32, 32)
    # Erasing comes after normalisation and fills with 0: each image has an erased patch of 10-20 %.
    for image in first:
        zero_share = (image == 0).all(0).float().mean().item()
        assert 0.1 <= zero_share <= 0.3


def test_loader_workers_augment_reproducibly():
    images = torch.randint(0, 256, (32, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    meta = {"image_size": 16, "mean": [0.5] * 3, "std": [0.25] * 3, "classes": list("ab")}
    files = DatasetFiles(Split(images, torch.arange(32) % 2), Split(images, torch.arange(32) % 2), meta)

    def epoch(workers):
        augment = Augment(crop_padding=2, hflip=True, autoaugment=True, workers=workers)
        torch.manual_seed(7)  # the trainer seeds every epoch like this; workers must not depend on later draws
        batches = list(train_loader(files, augment, 8, seed=3))
        torch.rand(1)
        return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])

    (a, la), (b, lb) = epoch(2), epoch(2)
    assert torch.equal(a, b) and torch.equal(la, lb)
    c, lc = epoch(0)
    assert torch.equal(la, lc)  # the same shuffling; only the augmentation's random stream differs
    assert not torch.equal(a, c)


def test_bf16_autocast_on_cpu_and_fp16_needs_cuda():
    student, teacher = nn.Linear(8, 3), nn.Linear(8, 3)
    distiller = Distiller(student, teacher, Distill(alpha=0.5))
    x, y = torch.randn(4, 8), torch.tensor([0, 1, 2, 0])
    with autocast("bf16", torch.device("cpu"), "r"):
        logits, losses = distiller.forward_train(x, y)
    assert logits.dtype == torch.bfloat16 and all(torch.isfinite(v) for v in losses.values())
    assert losses["ce"].dtype == torch.float32  # cross-entropy runs in fp32 under autocast
    with pytest.raises(KDError, match="runs.r.amp: fp16 needs a CUDA device"):
        autocast("fp16", torch.device("cpu"), "r")
