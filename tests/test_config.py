"""Every bad params file stops with one message naming the offending key."""
import subprocess
import sys

import pytest
import yaml

from kdlib.config import Run, Source, load_params, validate
from kdlib.config.reference import TARGET, render
from kdlib.errors import KDError
from tests.conftest import REPO, TINY


def error_of(raw: dict) -> str:
    with pytest.raises(KDError) as info:
        validate(raw)
    return str(info.value)


def test_profiles_validate():
    for path in [REPO / "params.yaml", *sorted((REPO / "configs").glob("*.yaml"))]:
        params = load_params(path)
        assert params.runs, path


def test_defaults_merge_into_runs():
    params = load_params(TINY)
    assert params.runs["student"].optimizer.lr == 0.05
    assert params.runs["teacher"].epochs == 4 and params.runs["student"].epochs == 3
    assert params.runs["student_kd"].distill.alpha == 0.7


BAD = [
    (lambda r: r["runs"]["student"].update(model="lenet5b"),
     "runs.student.model: unknown model 'lenet5b' (did you mean 'lenet5bn'?)"),
    (lambda r: r["runs"]["student"].update(dataset="cifar"), "runs.student.dataset: unknown dataset 'cifar'"),
    (lambda r: r["runs"]["student_kd_feature"].update(teacher="techer"),
     "runs.student_kd_feature.teacher: 'techer' names no run (did you mean 'teacher'?)"),
    (lambda r: r["runs"]["teacher"].update(teacher="student_kd"),
     "runs.teacher.teacher: teacher chain has a cycle: teacher -> student_kd -> teacher"),
    (lambda r: r["runs"]["teacher"].update(teacher="teacher"), "teacher chain has a cycle: teacher -> teacher"),
    (lambda r: r["runs"]["student"].update(epochs=0), "runs.student.epochs: Input should be greater than 0"),
    (lambda r: r["runs"]["student"].update(epochs=-3), "runs.student.epochs: Input should be greater than 0"),
    (lambda r: r["defaults"].update(epochs=0), "defaults.epochs: Input should be greater than 0"),
    (lambda r: r["runs"]["student_kd"]["distill"].update(alpha=1.5),
     "runs.student_kd.distill.alpha: Input should be less than or equal to 1"),
    (lambda r: r["runs"]["student_kd"]["distill"].update(alpha=-0.1),
     "runs.student_kd.distill.alpha: Input should be greater than or equal to 0"),
    (lambda r: r["runs"]["student_kd"]["distill"].update(temperature=0),
     "runs.student_kd.distill.temperature: Input should be greater than 0"),
    (lambda r: r["runs"]["student"].update(epoch=3), "runs.student.epoch: unknown key (did you mean 'epochs'?)"),
    (lambda r: r["defaults"]["optimizer"].update(lrr=0.1), "defaults.optimizer.lrr: unknown key (did you mean 'lr'?)"),
    (lambda r: r.update(run={}), "run: unknown key (did you mean 'runs'?)"),
    (lambda r: r["runs"]["teacher"]["optimizer"].update(lr=-0.1) if "optimizer" in r["runs"]["teacher"]
     else r["runs"]["teacher"].update(optimizer={"lr": -0.1}),
     "runs.teacher.optimizer.lr: Input should be greater than 0"),
    (lambda r: r["runs"]["teacher"].update(optimizer={"name": "adam"}),
     "runs.teacher.optimizer.name: Input should be 'sgd' or 'adamw'"),
    (lambda r: r["runs"].update({"my-run": {"model": "lenet5bn"}}),
     "runs.my-run: names must start with a letter and use only letters, digits and _"),
    (lambda r: r["datasets"].update({"cifar.10": {"source": "cifar10"}}),
     "datasets.cifar.10: names must start with a letter and use only letters, digits and _"),
    (lambda r: r.update(runs=["teacher", "student"]), "runs: must be a mapping of keys, not list"),
    (lambda r: r["runs"].update(student="lenet5bn"), "runs.student: must be a mapping of keys, not str"),
    (lambda r: r["runs"]["student"].update(epochs=None), "runs.student.epochs: Input should be a valid integer"),
    (lambda r: r["runs"]["teacher"].update(optimizer={"momentum": 0, "nesterov": True}),
     "runs.teacher.optimizer: 'nesterov: true' needs a momentum above 0"),
    (lambda r: r["runs"]["teacher"].update(schedule={"min_lr": 0.5}),
     "runs.teacher: schedule.min_lr (0.5) is above optimizer.lr (0.05)"),
    (lambda r: r["runs"]["student"].update(distill={"alpha": 0.5}),
     "runs.student: 'distill' is set but 'teacher' is not"),
    (lambda r: r["datasets"].update(other={"source": "digits"}) or r["runs"]["teacher"].update(dataset="other"),
     "runs.student_kd.teacher: 'teacher' trains on 'other', but 'student_kd' on 'digits'"),
    (lambda r: r["datasets"].update(folder={"source": "imagefolder"}),
     "datasets.folder: source 'imagefolder' needs 'path'"),
    (lambda r: r.update(profile="my profile"), "profile: 'my profile': a profile names folders, so it must start"),
    (lambda r: r.update(profile="raw"), "profile: 'raw' is taken: data/raw/ holds downloaded datasets"),
    (lambda r: r["datasets"]["digits"].update(source="mnist"), "datasets.digits.source: Input should be"),
    (lambda r: r["runs"]["student"].update(pretrained=True),
     "runs.student: pretrained: model 'lenet5bn' has no published weights (pretrained models: efficientnetv2_l,"),
    (lambda r: r["runs"]["student_kd_feature"].update(epochs=2),
     "runs.student_kd_feature: distill.schedule 'three_phase' needs at least 3 epochs, one per phase (epochs is 2)"),
    (lambda r: r["runs"]["teacher"].update(model="resnet18", width=1.0, pretrained=True),
     "runs.teacher: pretrained weights do not carry over into ACB branches; use block_type 'base'"),
    (lambda r: r["runs"]["student"].update(amp="fp8"), "runs.student.amp: Input should be 'none', 'bf16' or 'fp16'"),
    (lambda r: r["runs"]["student"].update(label_smoothing=1.0), "runs.student.label_smoothing: Input should be less than 1"),
    (lambda r: r["runs"]["student"].update(augment={"random_erasing": {"scale": [0.3, 0.1]}}),
     "runs.student.augment.random_erasing: scale must be [low, high] (got [0.3, 0.1])"),
    (lambda r: r["runs"]["student"].update(mix={"mixup_alpha": 0}), "runs.student.mix.mixup_alpha: Input should be greater than 0"),
    (lambda r: r["runs"]["student"].update(augment={"autoaugmnt": True}),
     "runs.student.augment.autoaugmnt: unknown key (did you mean 'autoaugment'?)"),
    (lambda r: r["runs"]["student"].update(block_type="ac"), "runs.student.block_type: Input should be 'base' or 'acb'"),
    (lambda r: r["runs"]["student_kd"]["distill"].update(method="features"),
     "runs.student_kd.distill.method: Input should be 'logits', 'logits_mse', 'feature', 'at', 'dkd', 'st', 'nst', "
     "'reviewkd', 'kd_mse' or 'stablekd'"),
    (lambda r: r["runs"]["student_kd"]["distill"].update(schedule="three_phase"),
     "runs.student_kd.distill: schedule 'three_phase' fixes alpha at 1, 0.5, 0 by thirds of the epochs; remove 'alpha'"),
    (lambda r: r["runs"]["student_kd"]["distill"].update(schedule="linear"),
     "runs.student_kd.distill: schedule 'linear' needs 'alpha_end'"),
    (lambda r: r["runs"]["student_kd"]["distill"].update(alpha_end=0.1),
     "runs.student_kd.distill: 'alpha_end' only applies to schedule 'linear' (schedule is 'constant')"),
    # chains
    (lambda r: r["chains"]["progressive"].append("gen4"), "chains.progressive: 'gen4' names no run"),
    (lambda r: r["chains"]["progressive"].append("teacher"), "chains.progressive: 'teacher' appears twice"),
    (lambda r: r["chains"].update(solo=["teacher"]), "chains.solo: List should have at least 2 items"),
    (lambda r: r.update(chains=["teacher", "student"]), "chains: must be a mapping of keys, not list"),
    (lambda r: r["chains"]["progressive"].append({"gen4": 1}), "chains.progressive.3: Input should be a valid string"),
    (lambda r: r["runs"]["gen3"].update(teacher="student_acb"),
     "runs.gen3.teacher: 'student_acb' is not an earlier generation of chain 'progressive' (teacher, student_kd)"),
    (lambda r: r["chains"].update(other=["student", "gen3"]),
     "chains.other: 'gen3' is already a student in chain 'progressive'"),
    (lambda r: r["runs"].update(gen3_scratch={"model": "lenet5bn", "width": 0.125}),
     "runs.gen3_scratch: chain 'progressive' needs this name for the scratch baseline of 'gen3'"),
    # seeds
    (lambda r: r["runs"]["student_kd_v2"].update(seed=3),
     "runs.student_kd_v2: give 'seed' (one run) or 'seeds' (one run per seed), not both"),
    (lambda r: r["runs"]["student_kd_v2"].update(seeds=[0, 0]), "runs.student_kd_v2.seeds: each seed once (got [0, 0])"),
    (lambda r: r["defaults"].update(seeds=[0, 1]), "defaults: give 'seed' (one run) or 'seeds' (one run per seed), not both"),
    (lambda r: r["runs"]["student_kd_v2"].update(seeds=[-1]),
     "runs.student_kd_v2.seeds.0: Input should be greater than or equal to 0"),
    (lambda r: r["runs"]["student_kd_v2"].update(seeds=[]), "runs.student_kd_v2.seeds: List should have at least 1 item"),
    (lambda r: r["runs"]["teacher"].update(seeds=[0, 1]),
     "runs.student_kd.seeds: teacher 'teacher' runs seeds [0, 1]; give 'student_kd' seeds from those"),
    (lambda r: r["runs"]["teacher"].update(seeds=[1, 2]),
     "runs.student_kd_v2.seeds: teacher 'teacher' runs seeds [1, 2]; give 'student_kd_v2' seeds from those"),
    (lambda r: r["runs"].update(student_kd_v2_s1={"model": "lenet5bn"}),
     "runs.student_kd_v2_s1: the name is taken by seed 1 of 'student_kd_v2'; rename it"),
    # report roles
    (lambda r: r["report"]["seed001"].update(v1="studnt_kd"),
     "report.seed001.v1: 'studnt_kd' names no run (did you mean 'student_kd'?)"),
    (lambda r: r["report"]["seed001"].update(v2="student"), "report.seed001.v2: 'student' has no teacher"),
    (lambda r: r["report"]["seed002"].update(chain="progresive"),
     "report.seed002.chain: 'progresive' names no chain (did you mean 'progressive'?)"),
    (lambda r: r["report"].update(seed004={}), "report.seed004: unknown key"),
    (lambda r: r["report"].update(seed003={"runs": ["student"]}), "report.seed003.runs: 'student' has no teacher"),
    (lambda r: r["report"]["seed001"].update(v2="student_kd"), "report.seed001: v1 and v2 name the same run"),
    # export
    (lambda r: r["export"].update(latency_second=1), "export.latency_second: unknown key (did you mean 'latency_seconds'?)"),
    (lambda r: r["export"].update(latency_batches=[1, 0]), "export.latency_batches.1: Input should be greater than 0"),
    (lambda r: r["export"].update(latency_seconds=0), "export.latency_seconds: Input should be greater than 0"),
    # numbers: finite, in range, and numbers (YAML's true/false, 2.5 epochs or "0.1" are refused, not converted)
    (lambda r: r["export"].update(latency_seconds=float("inf")), "export.latency_seconds: Input should be a finite number"),
    (lambda r: r["defaults"]["optimizer"].update(lr=float("inf")), "defaults.optimizer.lr: Input should be a finite number"),
    (lambda r: r["defaults"]["optimizer"].update(lr=float("nan")), "defaults.optimizer.lr: Input should be a finite number"),
    (lambda r: r["defaults"]["optimizer"].update(lr="0.1"), "defaults.optimizer.lr: Input should be a valid number"),
    (lambda r: r["runs"]["student"].update(epochs=True), "runs.student.epochs: Input should be a valid integer"),
    (lambda r: r["runs"]["student"].update(epochs=2.5), "runs.student.epochs: Input should be a valid integer"),
    (lambda r: r["runs"]["student"].update(epochs=10**7), "runs.student.epochs: Input should be less than or equal to 1000000"),
    (lambda r: r["runs"]["student"].update(width=0.0001),
     "runs.student.width: Input should be greater than or equal to 0.0625"),
    (lambda r: r["runs"]["student"].update(width=1e9), "runs.student.width: Input should be less than or equal to 16"),
    (lambda r: r["runs"]["student"].update(width=False), "runs.student.width: Input should be a valid number"),
    (lambda r: r["runs"]["student"].update(seed=2**40), "runs.student.seed: Input should be less than 4294967296"),
    (lambda r: r["runs"]["student"].update(batch_size=0), "runs.student.batch_size: Input should be greater than 0"),
    (lambda r: r["datasets"]["digits"].update(image_size=10**9),
     "datasets.digits.image_size: Input should be less than or equal to 4096"),
    (lambda r: r["runs"]["student"].update(augment={"hflip": "yes"}), "runs.student.augment.hflip: Input should be a valid boolean"),
    (lambda r: r["export"].update(latency_batches=[1, True]), "export.latency_batches.1: Input should be a valid integer"),
    (lambda r: r["runs"].update({"r" + "x" * 300: {"model": "lenet5bn"}}), "names must start with a letter and use only"),
    # unknown keys: the suggestion comes from the keys allowed where the typo is
    (lambda r: r.update(dataset={}), "dataset: unknown key (did you mean 'datasets'?)"),
    (lambda r: r.update(chian={}), "chian: unknown key (did you mean 'chains'?)"),
]


@pytest.mark.parametrize("mutate,message", BAD, ids=[m for _, m in BAD])
def test_bad_config_names_the_key(tiny_raw, mutate, message):
    mutate(tiny_raw)
    assert message in error_of(tiny_raw)


def test_duplicate_run_names_are_rejected(tmp_path):
    text = TINY.read_text().replace("  student_kd:\n", "  student:\n")
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    with pytest.raises(KDError, match=r"duplicate key 'student' at line \d+"):
        load_params(path)


def test_stage_exits_with_one_line_and_writes_nothing(tmp_path, tiny_raw):
    tiny_raw["runs"]["student"]["model"] = "resnet21"
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(tiny_raw))
    out = subprocess.run([sys.executable, str(REPO / "stages" / "train.py"), "student", "--params", str(bad)],
                         cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"error: {bad}: runs.student.model: unknown model 'resnet21' (did you mean 'resnet20'?) "
        f"(known: lenet5bn, lenet5bn_deep, cifar_quick, cifar_quick_deep, vgg16, vgg_shallow, resnet20, resnet56, "
        f"resnet8x4, resnet32x4, wrn_16_2, wrn_40_2, mobilenetv2, resnet18, resnet34, resnet101, efficientnetv2_s, "
        f"efficientnetv2_l, vit_t, vit_t_d8, swin_t, swin_s, swin_t_224, swin_s_224)"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_chain_sets_teachers_and_adds_scratch_baselines():
    params = load_params(TINY)  # chain teacher -> student_kd -> gen3
    assert params.runs["gen3"].teacher == "student_kd" and params.runs["gen3"].distill.alpha == 0.9
    scratch = params.runs["gen3_scratch"]
    assert scratch.teacher is None and scratch.distill is None and (scratch.model, scratch.width) == ("lenet5bn", 0.25)
    # student_kd's recipe is `student`'s: that run is its baseline, no second copy is trained.
    assert "student_kd_scratch" not in params.runs
    # The baseline comes from gen3's entry, without its teacher and distill; gen3's teacher link is its teacher's
    # checkpoint (a stage dependency), not a key of its entry.
    assert params.sources["gen3_scratch"].entry == "gen3" and {"teacher", "distill"} <= params.sources["gen3_scratch"].unused
    assert params.sources["gen3"] == Source("gen3", frozenset({"seeds"}))


def test_empty_sections_may_be_left_blank(tiny_raw):
    tiny_raw.update(chains=None, report=None)
    for key in ("gen3", "student_kd_v2"):
        tiny_raw["runs"].pop(key)
    params = validate(tiny_raw)
    assert params.chains == {} and params.report.seed001 is None


def test_a_chain_student_may_name_any_earlier_generation(tiny_raw):
    tiny_raw["runs"]["gen3"]["teacher"] = "teacher"
    assert validate(tiny_raw).runs["gen3"].teacher == "teacher"


def test_seeds_expand_into_one_run_each_learning_from_its_seeds_teacher(tiny_raw):
    params = validate(tiny_raw)
    assert params.replicas["student_kd_v2"] == {0: "student_kd_v2_s0", 1: "student_kd_v2_s1"}
    assert "student_kd_v2" not in params.runs and params.written["student_kd_v2"].seeds == [0, 1]
    assert [params.runs[f"student_kd_v2_s{s}"].seed for s in (0, 1)] == [0, 1]
    assert params.runs["student_kd_v2_s1"].teacher == "teacher"  # a one-seed teacher teaches every seed
    tiny_raw["runs"]["teacher"]["seeds"] = [0, 1, 2]
    for name in ("student_kd", "student_kd_feature", *(n for n in tiny_raw["runs"] if n.startswith("s3_"))):
        tiny_raw["runs"][name]["seeds"] = [2]
    tiny_raw["runs"]["gen3"]["seeds"] = [2]
    params = validate(tiny_raw)
    assert params.runs["student_kd_v2_s1"].teacher == "teacher_s1"
    assert params.runs["gen3_s2"].teacher == "student_kd_s2" and params.runs["student_kd_s2"].teacher == "teacher_s2"
    assert params.replicas["gen3_scratch"] == {2: "gen3_scratch_s2"}
    assert params.sources["teacher_s1"] == params.sources["teacher_s0"]


def test_the_params_reference_is_generated_and_up_to_date():
    text = render()
    assert (REPO / TARGET).read_text() == text, "stale: run `python -m kdlib.config.reference`"
    # Every key of a run, with its type, bounds, default and the comment beside it in the schema.
    assert all(f"| `{key}` |" in text for key in Run.model_fields)
    assert "| `train_fraction` | number (> 0, ≤ 1) | `1.0` | Train on this share of every class" in text
    assert "| `block_type` | one of `base`, `acb` | `\"base\"` |" in text
    assert "| `epochs` | whole number (> 0, ≤ 1000000) | required |" in text
    assert "| `alpha_end` | number (≥ 0, ≤ 1), or null | `null` |" in text  # bounds inside a union
    assert "| `dkd` | DKD | beta, temperature | beta: 8.0, temperature: 4.0 |" in text
    assert "## `dense.<name>[edges].teacher`, `dense.<name>[edges].student`" in text


def test_a_profile_without_a_name_takes_the_file_name(tmp_path):
    text = "\n".join(line for line in TINY.read_text().splitlines() if not line.startswith("profile:"))
    (tmp_path / "exp_a.yaml").write_text(text)
    params = load_params(tmp_path / "exp_a.yaml")
    assert params.profile == "exp_a" and str(params.layout.run_dir("student")) == "results/exp_a/runs/student"
    (tmp_path / "my exp.yaml").write_text(text)
    with pytest.raises(KDError, match=r"profile: 'my exp' \(from the file name: set a profile key\): a profile names "
                                      r"folders"):
        load_params(tmp_path / "my exp.yaml")
