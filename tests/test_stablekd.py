"""Seed 003: StableKD's decomposition and recomposition, its projectors, the AT and DKD losses, the stagewise
learning rate, class-stratified subsets, and StableKD stages as DAG nodes."""
import json
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
import yaml

from kdlib.config import Distill, validate
from kdlib.data.prepared import class_fraction
from kdlib.data.splits import Split
from kdlib.distill.at import at_loss, attention_map
from kdlib.distill.distiller import Distiller
from kdlib.distill.dkd import dkd_terms
from kdlib.distill.schedules import warmup
from kdlib.distill.kd import kd_kl
from kdlib.distill.blockwise import fold_projectors, student_in_teacher_widths
from kdlib.distill.stablekd import groups_at, initial_groups, recompose
from kdlib.distill.stage_plan import stage_epochs
from kdlib.engine.optim import stagewise
from kdlib.errors import KDError
from kdlib.models.build import build_model
from kdlib.pipeline import stages
from tests.conftest import TINY

STABLEKD = Distill(method="stablekd", temperature=1.0)


def pair(teacher_width=0.25, student_width=0.25):
    torch.manual_seed(0)
    teacher = build_model("resnet56", 10, teacher_width).eval()
    student = build_model("resnet20", 10, student_width)
    return teacher, student


def test_decomposed_blocks_read_the_teachers_outputs_and_keep_their_gradients():
    teacher, student = pair()
    distiller = Distiller(student, teacher, STABLEKD).train()
    assert distiller.groups == [[0], [1], [2], [3]]  # three stages and the head
    seen_teacher, seen_student = {}, {}
    for i, stage in enumerate(teacher.stages):
        stage.register_forward_hook(lambda m, args, out, i=i: seen_teacher.__setitem__(i, out.detach().clone()))
    for i, block in enumerate([*student.stages, student.head]):
        block.register_forward_pre_hook(lambda m, args, i=i: seen_student.__setitem__(i, args[0]))
    x, y = torch.randn(6, 3, 32, 32), torch.randint(0, 10, (6,))
    logits, losses = distiller.forward_train(x, y)
    assert torch.equal(seen_student[0], x)
    for i in (1, 2, 3):  # block i starts from exactly what teacher block i - 1 produced
        assert torch.equal(seen_student[i], seen_teacher[i - 1])
    assert set(losses) == {"ce", "kd", "mse_b0", "mse_b1", "mse_b2"}

    losses["mse_b1"].backward(retain_graph=True)
    grads = [[p.grad for p in block.parameters()] for block in [*student.stages, student.head]]
    assert all(g is not None and g.abs().sum() > 0 for g in grads[1])
    assert all(g is None for i in (0, 2, 3) for g in grads[i])  # block 1's loss reaches block 1 only
    student.zero_grad(set_to_none=True)
    (losses["ce"] + losses["kd"]).backward()
    assert all(p.grad is None for block in student.stages for p in block.parameters())
    assert all(p.grad is not None for p in student.head.parameters())


def test_recomposition_merges_neighbours_pairwise():
    assert initial_groups(4, 5) == [[0], [1], [2], [3], [4]]
    assert initial_groups(5, 3) == [[0, 1, 2], [3, 4], [5]]  # the head alone, earlier stage groups larger
    assert initial_groups(3, 1) == [[0, 1, 2, 3]]
    assert recompose([[0], [1], [2], [3], [4]]) == [[0, 1], [2, 3], [4]]
    assert groups_at(4, 5, 2) == [[0, 1, 2, 3], [4]]  # StableKD-5/2 ends with the body and the head
    assert groups_at(4, 5, 3) == [[0, 1, 2, 3, 4]]
    for k in range(1, 10):
        groups = initial_groups(8, k)
        assert len(recompose(groups)) == math.ceil(k / 2)
        assert sum(recompose(groups), []) == list(range(9))
    with pytest.raises(KDError, match="between 1 and 4"):
        initial_groups(3, 5)


def test_full_recomposition_trains_like_plain_kd():
    teacher, student = pair()
    x, y = torch.randn(6, 3, 32, 32), torch.randint(0, 10, (6,))
    stable = Distiller(student, teacher, Distill(method="stablekd", temperature=2.0, kl_weight=0.5), stage=2).train()
    assert stable.groups == [[0, 1, 2, 3]]  # 4 -> 2 -> 1 blocks
    torch.manual_seed(1)
    logits, losses = stable.forward_train(x, y)
    torch.manual_seed(1)
    plain = student(x)  # same BN batch statistics: the student's own end-to-end forward
    assert torch.allclose(logits, plain)
    with torch.no_grad():
        t = teacher(x)
    assert set(losses) == {"ce", "kd"}
    assert losses["ce"].item() == pytest.approx(F.cross_entropy(plain, y).item(), rel=1e-6)
    assert losses["kd"].item() == pytest.approx(0.5 * kd_kl(plain, t, 2.0).item(), rel=1e-6)
    # Vanilla KD with alpha 1/3 weighs CE and KL 2:1 as well, at 2/3 the scale.
    kd = Distiller(student, teacher, Distill(alpha=1 / 3, temperature=2.0)).train()
    _, kd_losses = kd.forward_train(x, y)
    assert sum(kd_losses.values()).item() == pytest.approx(2 / 3 * sum(losses.values()).item(), rel=1e-5)


@pytest.mark.parametrize("model,width", [("resnet20", 0.5), ("cifar_quick", 0.5)])
def test_projectors_fold_into_the_plain_student(model, width):
    torch.manual_seed(0)
    teacher, student = build_model(model, 10, 1.0).eval(), build_model(model, 10, width)
    net = student_in_teacher_widths(student, teacher, (3, 32, 32))
    assert [s for s in net.stage_shapes()] == teacher.stage_shapes()  # trained in the teacher's widths
    for module in net.modules():  # move the projectors and BN statistics off their initial values
        if isinstance(module, torch.nn.Conv2d) and module.kernel_size == (1, 1):
            torch.nn.init.normal_(module.weight, std=0.3)
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
    net.eval()
    plain = fold_projectors(net).eval()
    deployed = build_model(model, 10, width)
    deployed.load_state_dict(plain.state_dict())  # exactly the plain architecture
    x = torch.randn(4, 3, 32, 32)
    assert torch.allclose(deployed.eval()(x), net(x), atol=1e-4)


def test_projectors_need_a_linear_entry():
    teacher, student = build_model("wrn_16_2", 10, 1.0), build_model("wrn_16_2", 10, 0.5)
    with pytest.raises(KDError, match="cannot absorb a 1x1 projector"):
        student_in_teacher_widths(student, teacher, (3, 32, 32))
    with pytest.raises(KDError, match="student has 5 stages, the teacher 3"):
        student_in_teacher_widths(build_model("vgg_shallow", 10), build_model("resnet20", 10), (3, 32, 32))


def test_attention_transfer_golden_values():
    # Channel means of squares per position: [(1 + 9) / 2, (4 + 0) / 2] = [5, 2], over its norm sqrt(29).
    f = torch.tensor([[[[1.0, 2.0]], [[3.0, 0.0]]]])
    assert torch.allclose(attention_map(f), torch.tensor([[5.0, 2.0]]) / math.sqrt(29))
    g = torch.tensor([[[[0.0, 1.0]]]])  # one channel, attention [0, 1]
    expected = ((5 / math.sqrt(29)) ** 2 + (2 / math.sqrt(29) - 1) ** 2) / 2
    assert at_loss([f, f], [g, f]).item() == pytest.approx(expected, rel=1e-6)  # the second pair adds 0


def test_dkd_golden_values_and_the_kd_decomposition():
    s, t = torch.tensor([[1.0, 2.0, 0.5]], dtype=torch.float64), torch.tensor([[3.0, 1.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([0])
    temperature = 2.0
    p_s, p_t = F.softmax(s / temperature, 1)[0].tolist(), F.softmax(t / temperature, 1)[0].tolist()
    tckd = sum(bt * math.log(bt / bs) for bt, bs in ((p_t[0], p_s[0]), (1 - p_t[0], 1 - p_s[0]))) * 4
    nt_s = [p / (1 - p_s[0]) for p in p_s[1:]]  # the non-target classes renormalised
    nt_t = [p / (1 - p_t[0]) for p in p_t[1:]]
    nckd = sum(a * math.log(a / b) for a, b in zip(nt_t, nt_s)) * 4
    got_t, got_n = dkd_terms(s, t, y, temperature)
    assert got_t.item() == pytest.approx(tckd, rel=1e-5) and got_n.item() == pytest.approx(nckd, rel=1e-5)
    # DKD's identity: KD = TCKD + (1 - p_target^teacher) NCKD.
    assert kd_kl(s, t, temperature).item() == pytest.approx(tckd + (1 - p_t[0]) * nckd, rel=1e-5)
    assert [warmup(e, 24) for e in (0, 1, 2)] == [0.5, 1.0, 1.0]  # 24 epochs: two warm-up epochs


def test_stagewise_learning_rate_warms_up_and_anneals_every_stage():
    steps = [4, 4, 8]
    lrs = [stagewise(i, steps, 0.0) for i in range(16)]
    assert lrs[:4] == pytest.approx([0.25, 0.75, 0.75, 0.25])  # stage 0: peak 1 at mid-stage
    assert lrs[4:8] == pytest.approx([0.125, 0.375, 0.375, 0.125])  # stage 1: peak halved
    assert lrs[10] == pytest.approx(0.25 * 0.625)  # stage 2, step 3 of 8: (2.5 / 8) of the way, rising
    assert max(lrs[8:]) == pytest.approx(0.25 * 7 / 8)  # steps 3 and 4 of 8 sit 1/16 either side of the top
    assert stagewise(16, steps, 0.1) == pytest.approx(0.1)  # after the last step: the floor
    # With a floor, the amplitude above it halves (triangular2): stage 1's top is 0.1 + 0.9 * 0.5 * 0.75.
    assert stagewise(5, steps, 0.1) == pytest.approx(0.1 + 0.9 * 0.5 * 0.75)
    assert min(stagewise(i, steps, 0.6) for i in range(16)) >= 0.6
    assert stage_epochs(SimpleNamespace(epochs=20, distill=Distill(method="stablekd"))) == [6, 6, 8]  # floor(e/3) x2, rest
    assert stage_epochs(SimpleNamespace(epochs=8, distill=Distill(method="stablekd", recompositions=1,
                                                                  stage_epochs=[3, 5]))) == [3, 5]
    assert stage_epochs(SimpleNamespace(epochs=8, distill=Distill(method="dkd"))) == [8]


def test_class_fraction_is_stratified_and_seeded():
    labels = torch.tensor([0] * 10 + [1] * 5 + [2] * 20)
    split = Split(torch.arange(35).view(35, 1, 1, 1), labels)
    part = class_fraction(split, 0.4, seed=3)
    assert torch.bincount(part.labels).tolist() == [4, 2, 8]
    assert torch.equal(part.images.flatten(), part.images.flatten().sort().values)  # original order kept
    assert torch.equal(class_fraction(split, 0.4, seed=3).images, part.images)
    assert not torch.equal(class_fraction(split, 0.4, seed=4).images, part.images)
    assert torch.equal(labels[part.images.flatten()], part.labels)


def _tiny(tmp_path, stage_epochs):
    raw = yaml.safe_load(TINY.read_text())
    raw["runs"]["s3_stablekd"]["distill"]["stage_epochs"] = stage_epochs
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return {s.name: s for s in stages(str(path))}


def test_stablekd_stages_are_chained_nodes_rerun_from_the_changed_stage(tmp_path):
    before, after = _tiny(tmp_path, [1, 2]), _tiny(tmp_path, [1, 3])
    stage0, final = before["train_s3_stablekd_stage0"], before["train_s3_stablekd"]
    assert stage0.arg == "s3_stablekd --stage 0" and stage0.outs == ["results/tiny/runs/s3_stablekd/stage0.pt"]
    assert "results/tiny/runs/s3_stablekd/stage0.pt" in final.deps and not any("stage" in d for d in stage0.deps[-4:])
    recipe = json.loads(stage0.values)["runs"]["s3_stablekd"]  # its own stage's epochs only, no total
    assert recipe["distill"]["stage_epochs"] == [1] and "epochs" not in recipe
    # Stage 1's epochs changed: stage 0 keeps its params and values (neither tool reruns it), the last stage not.
    assert after["train_s3_stablekd_stage0"].values == stage0.values
    assert after["train_s3_stablekd"].values != final.values
    changed_first = _tiny(tmp_path, [2, 2])
    assert changed_first["train_s3_stablekd_stage0"].values != stage0.values


def test_stablekd_config_errors_name_the_key():
    base = {"datasets": {"d": {"source": "digits"}},
            "runs": {"t": {"model": "resnet20", "dataset": "d", "epochs": 3}}}

    def error(student):
        with pytest.raises(KDError) as e:
            validate({**base, "runs": {**base["runs"], "s": {"model": "resnet20", "dataset": "d", "teacher": "t",
                                                             **student}}})
        return str(e.value)

    assert "runs.s.distill: method 'at' does not use temperature (it reads: beta)" in error(
        {"epochs": 3, "distill": {"method": "at", "temperature": 2.0}})
    assert "stage_epochs needs one entry per stage, recompositions + 1 = 3 (got 2)" in error(
        {"distill": {"method": "stablekd", "stage_epochs": [1, 2]}})
    assert "epochs (5) must be the sum of distill.stage_epochs [1, 1, 2]" in error(
        {"epochs": 5, "distill": {"method": "stablekd", "stage_epochs": [1, 1, 2]}})
    assert "schedule 'stagewise' follows StableKD's stages" in error({"epochs": 3, "schedule": {"name": "stagewise"}})
    assert "it needs unmixed labels" in error({"epochs": 3, "mix": {}, "distill": {"method": "dkd"}})
    assert "StableKD with 2 recompositions trains 3 stages" in error({"epochs": 2, "distill": {"method": "stablekd"}})
    assert "runs.s.distill.blocks: at most 4 for 'resnet20' (its 3 stages and the head; got 9)" in error(
        {"epochs": 3, "distill": {"method": "stablekd", "blocks": 9}})
    assert "runs.s.distill.method: 'at' pairs the student's stages with the teacher's, but 'vgg_shallow' has 5 and " \
           "'resnet20' 3" in error({"epochs": 3, "model": "vgg_shallow", "distill": {"method": "at"}})
    assert "warmup_epochs applies to schedule 'cosine'" in error(
        {"epochs": 3, "schedule": {"name": "stagewise", "warmup_epochs": 1}, "distill": {"method": "stablekd"}})


def test_method_defaults_and_round_trip():
    assert Distill(method="stablekd").temperature == 1.0 and Distill(method="kd_mse").temperature == 1.0
    assert Distill().temperature == 4.0 and Distill(method="dkd").temperature == 4.0
    assert Distill(method="at").beta == 1000.0 and Distill(method="dkd").beta == 8.0
    assert Distill(method="feature").temperature is None  # it reads no temperature
    for method in ("at", "dkd", "kd_mse", "stablekd", "feature"):  # a dumped config validates again
        spec = Distill(method=method)
        assert Distill.model_validate(spec.model_dump()) == spec


def test_stage_counts_match_the_models():
    from kdlib.models.registry import MODELS, STAGES
    assert set(STAGES) == set(MODELS)
    assert all(len(build_model(name, 10).stages) == count for name, count in STAGES.items())
