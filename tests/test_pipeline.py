"""One DAG, two tools: dvc.yaml is generated from kdlib.pipeline and both tools see the same graph."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kdlib.config import load_params
from kdlib.paths import Layout
from kdlib.pipeline import RECIPES, code_deps, render_dvc_yaml, stages, write_recipes
from kdlib.pipeline import main as pipeline_main
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
    feature, logits = by_name["train_student_kd_feature"], by_name["train_student_kd"]
    assert {"kdlib/models/lenet.py", "kdlib/models/cifar_quick.py"} <= set(feature.deps)  # its own model, its teacher's
    # A student replaying its teacher's logits runs its own model only; the teacher's is its cache stage's.
    assert "kdlib/models/lenet.py" in logits.deps and "kdlib/models/cifar_quick.py" not in logits.deps
    assert "kdlib/models/cifar_quick.py" in by_name["teacher_outputs_s3_dkd"].deps
    assert dkd.tables["kdlib/models/registry.py"] == ["MODELS.cifar_quick"]
    assert {d for d in by_name["prepare_digits"].deps if d.startswith(("kdlib/models", "kdlib/engine/trainer"))} == set()


def runs_in(stage) -> dict:
    """The runs a stage's recipe holds, resolved."""
    return json.loads(stage.values)["runs"]


def test_a_stage_recipe_holds_its_run_and_its_teachers():
    by_name = {s.name: s for s in stages(str(REPO / "configs/tiny.yaml"))}
    raw = load_params(TINY)
    kd = runs_in(by_name["train_student_kd"])
    assert set(kd) == {"student_kd", "teacher"} and kd["teacher"] == raw.runs["teacher"].model_dump(mode="json")
    assert set(runs_in(by_name["train_student"])) == {"student"}
    # Resolved: the teacher's own epochs, the student's from defaults (editing defaults.epochs re-runs the student).
    assert (kd["teacher"]["epochs"], kd["student_kd"]["epochs"]) == (raw.runs["teacher"].epochs, 3)
    recipe = json.loads(by_name["train_student_kd"].values)
    assert recipe["dataset"]["source"] == "digits" and "MODELS.lenet5bn" in recipe["tables"]["kdlib/models/registry.py"]
    assert by_name["train_student_kd"].gpu and not by_name["export_student_kd"].gpu
    # The teacher is an ACB run: students learn from its fused checkpoint, written by its fuse stage (logit students
    # through the teacher-output cache, tests/test_teacher_outputs.py).
    assert "results/tiny/runs/teacher/deploy.pt" in by_name["train_student_kd_feature"].deps
    assert by_name["fuse_teacher"].outs == ["results/tiny/runs/teacher/deploy.pt"]
    assert "results/tiny/runs/student_acb/deploy.pt" in by_name["export_student_acb"].deps
    assert "fuse_student" not in by_name and by_name["fuse_teacher"].all_cores


def test_recipes_are_rewritten_only_where_they_changed(tmp_path, monkeypatch, tiny_raw):
    monkeypatch.chdir(make_workspace(tmp_path))
    with_values = {s.name for s in stages("params.yaml") if s.values}
    layout = Layout("tiny")
    (layout.recipes / "train_gone.json").parent.mkdir(parents=True)
    (layout.recipes / "train_gone.json").write_text("{}")  # a stage no longer in the params file
    assert write_recipes(stages("params.yaml"), layout) == (len(with_values), len(with_values))
    assert {p.stem for p in layout.recipes.iterdir()} == with_values
    before = {p.name: (p.read_text(), p.stat().st_mtime_ns) for p in layout.recipes.iterdir()}
    tiny_raw["runs"]["gen3"]["distill"] = {"alpha": 0.25}
    Path("params.yaml").write_text(yaml.safe_dump(tiny_raw))
    assert write_recipes(stages("params.yaml"), layout) == (2, len(with_values))
    changed = {p.stem for p in layout.recipes.iterdir() if (p.read_text(), p.stat().st_mtime_ns) != before[p.name]}
    assert changed == {"train_gen3", "tables"}
    assert json.loads((layout.recipes / "train_gen3.json").read_text())["runs"]["gen3"]["distill"]["alpha"] == 0.25
    assert subprocess.run([sys.executable, "-m", "kdlib.pipeline", RECIPES], capture_output=True,
                          text=True).stdout == f"0 of {len(with_values)} recipes changed (results/tiny/recipes/)\n"


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
    listed = stages(str(ws / "params.yaml"))
    assert snake_nodes == dvc_nodes - {RECIPES} == {s.name for s in listed}
    # DVC's one extra node feeds every stage that has values its recipe file.
    recipes = {e for e in dvc_edges if e[0] == RECIPES}
    assert recipes == {(RECIPES, s.name) for s in listed if s.values} and len(recipes) >= len(listed) - 6
    assert snake_edges == dvc_edges - recipes
    assert len(snake_edges) >= len(snake_nodes) - 1


def test_teacher_feeds_students_through_its_fuse_stage(tmp_path):
    ws = make_workspace(tmp_path, REPO / "configs/tiny.yaml")
    _, snake_edges = snakemake_graph(ws)
    _, dvc_edges = dvc_graph(ws)
    for edges in (snake_edges, dvc_edges):
        assert {("train_teacher", "fuse_teacher"), ("fuse_teacher", "teacher_outputs_s3_dkd"),
                ("teacher_outputs_s3_dkd", "train_student_kd"), ("fuse_teacher", "train_student_kd_feature"),
                ("fuse_teacher", "export_teacher"), ("train_student_acb", "fuse_student_acb"),
                ("fuse_student_acb", "export_student_acb")} <= edges
        assert not {("train_teacher", "train_student_kd"), ("fuse_teacher", "train_student_kd")} & edges


def test_three_generation_chain_and_seeds_in_the_dag(tmp_path):
    ws = make_workspace(tmp_path, REPO / "configs/tiny.yaml")  # chain: teacher -> student_kd -> gen3
    snake_nodes, snake_edges = snakemake_graph(ws)
    _, dvc_edges = dvc_graph(ws)
    for edges in (snake_edges, {e for e in dvc_edges if e[0] != RECIPES}):
        # Logit students through their teacher-output caches; student_kd_v2 runs its teacher live
        # (teacher_cache: false).
        assert {("fuse_teacher", "teacher_outputs_s3_dkd"), ("train_student_kd", "teacher_outputs_gen3"),
                ("teacher_outputs_gen3", "train_gen3"), ("fuse_teacher", "train_student_kd_v2_s0"),
                ("fuse_teacher", "train_student_kd_v2_s1")} <= edges
        # Scratch baselines need only the data, and the seeds of one run are independent nodes.
        assert {e for e in edges if e[1] in ("train_gen3_scratch", "train_student")} == {
            ("prepare_digits", "train_gen3_scratch"), ("prepare_digits", "train_student")}
        assert not {e for e in edges if "student_kd_v2_s0" in e[0] and "student_kd_v2_s1" in e[1]}
    assert {"train_gen3_scratch", "export_gen3_scratch", "train_student_kd_v2_s0", "train_student_kd_v2_s1"} <= snake_nodes
    assert "train_student_kd_scratch" not in snake_nodes  # `student` already is its baseline


def test_chain_recipes_hold_what_defines_each_run():
    by_name = {s.name: s for s in stages(str(REPO / "configs/tiny.yaml"))}
    assert set(runs_in(by_name["train_gen3"])) == {"gen3", "student_kd", "teacher"}
    # The scratch baseline follows gen3's model and width, not its teacher or distillation settings.
    scratch, gen3 = runs_in(by_name["train_gen3_scratch"]), runs_in(by_name["train_gen3"])["gen3"]
    assert set(scratch) == {"gen3_scratch"} and scratch["gen3_scratch"]["teacher"] is None
    assert scratch["gen3_scratch"]["distill"] is None
    assert {k: scratch["gen3_scratch"][k] for k in ("model", "width")} == {k: gen3[k] for k in ("model", "width")}
    # Each seed's run is its own recipe with one seed and no list of seeds (adding a seed re-runs nothing already
    # trained); the seeds differ in their seed only.
    s0, s1 = runs_in(by_name["train_student_kd_v2_s0"]), runs_in(by_name["train_student_kd_v2_s1"])
    assert (s0["student_kd_v2_s0"]["seed"], s1["student_kd_v2_s1"]["seed"]) == (0, 1)
    assert s0["student_kd_v2_s0"]["seeds"] is None
    assert {**s0["student_kd_v2_s0"], "seed": 1} == s1["student_kd_v2_s1"] and s0["teacher"] == s1["teacher"]


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
    assert planned | {RECIPES} == set(re.findall(r"^(\w+):$", dvc.stdout, re.M)), dvc.stdout[-500:]
    target, text = render_dvc_yaml(str(REPO / profile))
    assert f"--params {REPO / profile}" in text and target == Path("pipelines") / Path(profile).stem / "dvc.yaml"


def test_the_stage_list_stops_quietly_when_its_reader_does():
    done = subprocess.run(["bash", "-c", f"'{sys.executable}' -m kdlib.pipeline list --params {TINY} | head -1; "
                                         "exit ${PIPESTATUS[0]}"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout.split()[0] == stages(str(TINY))[0].name


def test_dvcs_recipes_stage_stops_when_an_edit_adds_stages_its_pipeline_lacks(tmp_path, monkeypatch, tiny_raw, capsys):
    """DVC runs the stages its file lists: a new seed (or run, or shared cache) needs the file written again."""
    monkeypatch.chdir(tmp_path)
    for code in ("stages", "kdlib"):  # read for each stage's code dependencies
        Path(code).symlink_to(REPO / code)
    Path("params.yaml").write_text(yaml.safe_dump(tiny_raw, sort_keys=False))
    assert pipeline_main(["dvc"]) == 0 and pipeline_main(["recipes"]) == 0
    tiny_raw["runs"]["student_kd_v2"]["seeds"] = [0, 1, 2]
    Path("params.yaml").write_text(yaml.safe_dump(tiny_raw, sort_keys=False))
    capsys.readouterr()
    assert pipeline_main(["recipes"]) == 2
    assert capsys.readouterr().err == (
        "error: dvc.yaml no longer matches params.yaml (new stages: export_student_kd_v2_s2, "
        "train_student_kd_v2_s2; stages rewired: tables); run "
        "`python -m kdlib.pipeline dvc`, then `dvc repro` again\n")
    assert not Path("results/tiny/recipes/train_student_kd_v2_s2.json").exists()
    assert pipeline_main(["dvc"]) == 0 and pipeline_main(["recipes"]) == 0
