"""The whole DAG on the tiny profile with Snakemake, then the DVC bookkeeping, then a params edit."""
import json
import re

import pytest
import yaml

from tests.conftest import BIN, make_workspace, run

SNAKEMAKE, DVC = str(BIN / "snakemake"), str(BIN / "dvc")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    ws = make_workspace(tmp_path_factory.mktemp("e2e"))
    run([SNAKEMAKE, "--cores", "2", "--resources", "gpu=1"], ws)
    run([DVC, "commit", "--force", "--quiet"], ws)
    run([SNAKEMAKE, "--touch", "--cores", "1", "--quiet"], ws)
    return ws


def table_rows(path):
    lines = [l for l in path.read_text().splitlines() if l.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return {cells[0]: dict(zip(header, cells)) for cells in
            ([c.strip() for c in l.strip("|").split("|")] for l in lines[2:])}


def test_tables_hold_the_computed_metrics(finished):
    rows = table_rows(finished / "results/tables/runs.md")
    assert set(rows) == {"teacher", "student", "student_kd"}
    for name, row in rows.items():
        metrics = json.loads((finished / f"results/runs/{name}/metrics.json").read_text())
        evaluation = json.loads((finished / f"results/runs/{name}/eval.json").read_text())
        # The evaluate stage reloads the checkpoint and must reproduce the trainer's last evaluation.
        assert evaluation["test_acc"] == pytest.approx(metrics["final"]["test_acc"], abs=1e-9)
        assert row["eval top-1 (%)"] == f"{evaluation['test_acc']:.2f}"
        assert row["best top-1 (%)"] == f"{metrics['best']['test_acc']:.2f}"
        assert row["epochs"] == str(metrics["epochs"]) and row["dataset"] == "digits" and row["seed"] == "0"
        assert evaluation["num_test"] == 359 and 20 < evaluation["test_acc"] <= 100
    assert rows["teacher"]["model"] == "cifar_quick" and rows["student_kd"]["teacher"] == "teacher"

    ts = table_rows(finished / "results/tables/teacher_student.md")["student_kd"]
    student = json.loads((finished / "results/runs/student_kd/eval.json").read_text())["test_acc"]
    teacher = json.loads((finished / "results/runs/teacher/eval.json").read_text())["test_acc"]
    baseline = json.loads((finished / "results/runs/student/eval.json").read_text())["test_acc"]
    assert ts["scratch baseline"] == "student"
    assert ts["gap to teacher (pts)"] == f"{teacher - student:+.2f}"
    assert ts["KD gain (pts)"] == f"{student - baseline:+.2f}"

    report = (finished / "results/report.md").read_text()
    assert "# Results: `tiny` profile" in report and "scikit-learn digits" in report
    assert "1438 train / 359 test images" in report and "Budget: 2, 3 epochs per run; seed(s): 0." in report
    assert (finished / "results/figures/test_accuracy.png").stat().st_size > 10_000


def test_both_tools_agree_nothing_is_left_to_do(finished):
    assert "Nothing to be done" in run([SNAKEMAKE, "-n"], finished).stdout
    assert "Data and pipelines are up to date" in run([DVC, "status"], finished).stdout


def edited(ws, edit):
    """What each tool would re-run after `edit` to params.yaml (restored afterwards)."""
    params = ws / "params.yaml"
    original = params.read_text()
    raw = yaml.safe_load(original)
    edit(raw)
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    try:
        snake = set(re.findall(r"^rule (\w+):", run([SNAKEMAKE, "-n"], ws).stdout, re.M)) - {"all"}
        dvc = set(re.findall(r"^(\w+):$", run([DVC, "status"], ws).stdout, re.M))
        # A single run by name, with either tool.
        single = set(re.findall(r"^rule (\w+):", run([SNAKEMAKE, "-n", "train_teacher"], ws).stdout, re.M))
        dvc_single = run([DVC, "status", "train_teacher"], ws).stdout
    finally:
        params.write_text(original)
    return snake, dvc, single, dvc_single


def test_default_edit_spares_runs_that_override_it(finished):
    snake, dvc, _, _ = edited(finished, lambda raw: raw["defaults"].update(epochs=1))
    expected = {"train_student", "evaluate_student", "train_student_kd", "evaluate_student_kd", "tables"}
    assert snake == expected and dvc == expected  # the teacher sets its own epochs


def test_lr_edit_names_exactly_the_run_and_its_descendants(finished):
    snake, dvc, single, dvc_single = edited(finished, lambda raw: raw["runs"]["teacher"].update(optimizer={"lr": 0.02}))
    expected = {"train_teacher", "evaluate_teacher", "train_student_kd", "evaluate_student_kd", "tables"}
    assert snake == expected and dvc == expected
    assert single == {"train_teacher"}
    assert "train_teacher:" in dvc_single and "evaluate_teacher" not in dvc_single
    assert "Nothing to be done" in run([SNAKEMAKE, "-n"], finished).stdout
