"""One DAG, two tools: dvc.yaml is generated from kdlib.pipeline and both tools see the same graph."""
import re
import subprocess
import sys

import pytest

from kdlib.pipeline import code_deps, render_dvc_yaml, stages
from tests.conftest import BIN, REPO, make_workspace, run


def test_committed_dvc_yaml_is_up_to_date():
    out = subprocess.run([sys.executable, "-m", "kdlib.pipeline", "dvc", "--check"], cwd=REPO,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_code_deps_follow_imports_transitively():
    deps = code_deps("stages/train.py", REPO)
    assert "kdlib/engine/trainer.py" in deps and "kdlib/distill/losses.py" in deps  # via trainer -> distiller
    assert "kdlib/models/resnet.py" in deps  # via the registry's lazy "module:constructor" entries
    assert "kdlib/report/tables.py" not in deps


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
    assert by_name["train_student_kd"].gpu and not by_name["evaluate_student_kd"].gpu
    # The teacher is an ACB run: students learn from its fused checkpoint, written by its fuse stage.
    assert "results/runs/teacher/deploy.pt" in by_name["train_student_kd"].deps
    assert by_name["fuse_teacher"].outs == ["results/runs/teacher/deploy.pt"]
    assert "results/runs/student_acb/deploy.pt" in by_name["evaluate_student_acb"].deps
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
                ("fuse_teacher", "train_student_kd_feature"), ("fuse_teacher", "evaluate_teacher"),
                ("train_student_acb", "fuse_student_acb"), ("fuse_student_acb", "evaluate_student_acb")} <= edges
        assert ("train_teacher", "train_student_kd") not in edges


@pytest.mark.parametrize("profile", ["configs/cifar10_seed000.yaml", "configs/cifar100.yaml"])
def test_paper_profiles_dry_run(profile):
    out = run([str(BIN / "snakemake"), "-n", "--config", f"params={profile}"], REPO)
    assert re.search(r"^total\s+\d+", out.stdout, re.M), out.stdout[-500:]
    text = render_dvc_yaml(str(REPO / profile))
    assert f"--params {REPO / profile}" in text
