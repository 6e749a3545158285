"""One DAG, two tools: dvc.yaml is generated from kdlib.pipeline and both tools see the same graph."""
import re
import subprocess
import sys

import pytest

from kdlib.config import load_params
from kdlib.pipeline import _inherited, code_deps, render_dvc_yaml, stages
from tests.conftest import BIN, REPO, TINY, make_workspace, run, run_all


def test_committed_dvc_yaml_is_up_to_date():
    out = subprocess.run([sys.executable, "-m", "kdlib.pipeline", "dvc", "--check"], cwd=REPO,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_code_deps_follow_imports_transitively():
    deps = code_deps("stages/train.py", REPO)
    assert "kdlib/engine/trainer.py" in deps and "kdlib/distill/method.py" in deps  # via trainer -> distiller
    assert "kdlib/report/tables.py" not in deps
    # Models and methods are imported by name: a run depends on its own only. Parsing, validation and the name
    # tables are not result code (their values are tracked instead), nor are docstring-only package files.
    assert not {d for d in deps if d.startswith(("kdlib/models/resnet", "kdlib/distill/dkd", "kdlib/config/"))}
    assert not {"kdlib/models/registry.py", "kdlib/distill/methods.py", "kdlib/errors.py", "kdlib/__init__.py"} & set(deps)


def test_a_stage_depends_on_its_own_model_and_method():
    by_name = {s.name: s for s in stages(str(TINY))}
    dkd, at = by_name["train_s3_dkd"], by_name["train_s3_at"]
    assert "kdlib/distill/dkd.py" in dkd.deps and "kdlib/distill/dkd.py" not in at.deps
    assert "kdlib/models/cifar_quick.py" in dkd.deps and "kdlib/models/lenet.py" not in dkd.deps
    assert "kdlib/models/lenet.py" in by_name["train_student_kd"].deps  # its own model, and its teacher's
    assert "kdlib/models/cifar_quick.py" in by_name["train_student_kd"].deps
    assert dkd.tables["kdlib/models/registry.py"] == ["MODELS.cifar_quick"]
    assert {d for d in by_name["prepare_digits"].deps if d.startswith(("kdlib/models", "kdlib/engine/trainer"))} == set()


def test_stage_params_name_the_run_and_its_teachers():
    by_name = {s.name: s for s in stages(str(REPO / "configs/tiny.yaml"))}
    inherited = ["defaults.augment.crop_padding", "defaults.augment.hflip", "defaults.batch_size", "defaults.dataset",
                 "defaults.epochs", "defaults.optimizer.lr", "defaults.optimizer.momentum", "defaults.optimizer.name",
                 "defaults.optimizer.weight_decay", "defaults.schedule.name", "defaults.seed"]
    assert by_name["train_student_kd"].params == ["datasets.digits", *inherited, "runs.student_kd", "runs.teacher"]
    assert by_name["train_student"].params == ["datasets.digits", *inherited, "runs.student"]
    # The teacher sets its own epochs, so editing defaults.epochs does not re-run it.
    assert by_name["train_teacher"].params == ["datasets.digits", *(k for k in inherited if k != "defaults.epochs"),
                                               "runs.teacher"]
    assert by_name["train_student_kd"].gpu and not by_name["export_student_kd"].gpu
    # The teacher is an ACB run: students learn from its fused checkpoint, written by its fuse stage.
    assert "results/runs/teacher/deploy.pt" in by_name["train_student_kd"].deps
    assert by_name["fuse_teacher"].outs == ["results/runs/teacher/deploy.pt"]
    assert "results/runs/student_acb/deploy.pt" in by_name["export_student_acb"].deps
    assert "fuse_student" not in by_name and by_name["fuse_teacher"].all_cores


def snakemake_graph(ws):
    dot = run([str(BIN / "snakemake"), "--rulegraph"], ws).stdout
    names = dict(re.findall(r'^\s*(\d+)\[label = "([^"]+)"', dot, re.M))
    edges = {(names[a], names[b]) for a, b in re.findall(r"^\s*(\d+) -> (\d+)", dot, re.M)}
    return set(names.values()) - {"all"}, {e for e in edges if "all" not in e}


def dvc_graph(ws):
    dot = run([str(BIN / "dvc"), "dag", "--dot"], ws).stdout
    return set(re.findall(r'^"([^"]+)";', dot, re.M)), set(re.findall(r'^"([^"]+)" -> "([^"]+)";', dot, re.M))


@pytest.mark.parametrize("profile", ["configs/tiny.yaml", "params.yaml", "configs/cifar10_seed000.yaml"])
def test_snakemake_and_dvc_build_the_same_dag(tmp_path, profile):
    ws = make_workspace(tmp_path, REPO / profile)
    snake_nodes, snake_edges = snakemake_graph(ws)
    dvc_nodes, dvc_edges = dvc_graph(ws)
    assert snake_nodes == dvc_nodes == {s.name for s in stages(str(ws / "params.yaml"))}
    assert snake_edges == dvc_edges
    assert len(snake_edges) >= len(snake_nodes) - 1


def test_teacher_feeds_students_through_its_fuse_stage(tmp_path):
    ws = make_workspace(tmp_path, REPO / "configs/tiny.yaml")
    _, snake_edges = snakemake_graph(ws)
    _, dvc_edges = dvc_graph(ws)
    for edges in (snake_edges, dvc_edges):
        assert {("train_teacher", "fuse_teacher"), ("fuse_teacher", "train_student_kd"),
                ("fuse_teacher", "train_student_kd_feature"), ("fuse_teacher", "export_teacher"),
                ("train_student_acb", "fuse_student_acb"), ("fuse_student_acb", "export_student_acb")} <= edges
        assert ("train_teacher", "train_student_kd") not in edges


def test_three_generation_chain_and_seeds_in_the_dag(tmp_path):
    ws = make_workspace(tmp_path, REPO / "configs/tiny.yaml")  # chain: teacher -> student_kd -> gen3
    snake_nodes, snake_edges = snakemake_graph(ws)
    _, dvc_edges = dvc_graph(ws)
    for edges in (snake_edges, dvc_edges):
        assert {("fuse_teacher", "train_student_kd"), ("train_student_kd", "train_gen3"),
                ("fuse_teacher", "train_student_kd_v2_s0"), ("fuse_teacher", "train_student_kd_v2_s1")} <= edges
        # Scratch baselines need only the data, and the seeds of one run are independent nodes.
        assert {e for e in edges if e[1] in ("train_gen3_scratch", "train_student")} == {
            ("prepare_digits", "train_gen3_scratch"), ("prepare_digits", "train_student")}
        assert not {e for e in edges if "student_kd_v2_s0" in e[0] and "student_kd_v2_s1" in e[1]}
    assert {"train_gen3_scratch", "export_gen3_scratch", "train_student_kd_v2_s0", "train_student_kd_v2_s1"} <= snake_nodes
    assert "train_student_kd_scratch" not in snake_nodes  # `student` already is its baseline


def test_chain_stage_params_track_what_defines_each_run():
    by_name = {s.name: s for s in stages(str(REPO / "configs/tiny.yaml"))}
    assert {"runs.gen3", "runs.student_kd", "runs.teacher"} <= set(by_name["train_gen3"].params)
    # The scratch baseline follows gen3's model and width, not its teacher or distillation settings.
    scratch = by_name["train_gen3_scratch"].params
    assert "runs.gen3.model" in scratch and "runs.gen3.width" in scratch
    assert not {k for k in scratch if k.startswith(("chains", "runs.student_kd", "runs.teacher")) or k == "runs.gen3"}
    # Every seed's run follows the run's recipe, key by key, but not its list of seeds (adding a seed re-runs
    # nothing already trained) nor the seed in defaults, which it overrides (its teacher's seed still counts).
    seeded = by_name["train_student_kd_v2_s0"].params
    assert seeded == by_name["train_student_kd_v2_s1"].params
    assert {"runs.student_kd_v2.model", "runs.student_kd_v2.distill.alpha", "runs.student_kd_v2.mix.cutmix_alpha"} <= set(seeded)
    assert not {k for k in seeded if k.startswith("runs.student_kd_v2.seeds")}
    own = load_params(TINY).sources["student_kd_v2_s0"].unused
    assert _inherited({"seed": 0, "epochs": 3}, {"seeds": [0, 1]}, own) == ["defaults.epochs"]
    assert '"seed": 1' in by_name["train_student_kd_v2_s1"].values


@pytest.mark.parametrize("profile", ["configs/cifar10_seed000.yaml", "configs/cifar100.yaml", "configs/seed001_cifar100.yaml",
                                     "configs/seed002_cifar100.yaml", "configs/seed003_cifar100.yaml",
                                     "configs/seed003_transformers_cifar100.yaml", "configs/seed003_imagenet_swin.yaml",
                                     "configs/seed003_imagewoof.yaml"])
def test_paper_profiles_dry_run(tmp_path, profile):
    ws = make_workspace(tmp_path, REPO / profile)
    for folder in ("BSDS500", "imagewoof2-160", "imagenet"):  # data the user downloads (seed 002's edges, image folders)
        (ws / "data/raw" / folder).mkdir(parents=True)
    # DVC's dry run hashes every stage's inputs, which do not exist yet: its status lists every stage instead.
    out, dvc = run_all([[str(BIN / "snakemake"), "-n"], [str(BIN / "dvc"), "status"]], ws)
    assert re.search(r"^total\s+\d+", out.stdout, re.M), out.stdout[-500:]
    planned = set(re.findall(r"^(\w+)\s+\d+$", out.stdout, re.M)) - {"all", "total"}  # the job counts' rules
    assert planned == set(re.findall(r"^(\w+):$", dvc.stdout, re.M)), dvc.stdout[-500:]
    text = render_dvc_yaml(str(REPO / profile))
    assert f"--params {REPO / profile}" in text


def test_the_stage_list_stops_quietly_when_its_reader_does():
    done = subprocess.run(["bash", "-c", f"'{sys.executable}' -m kdlib.pipeline list --params {TINY} | head -1; "
                                         "exit ${PIPESTATUS[0]}"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout.split()[0] == stages(str(TINY))[0].name
