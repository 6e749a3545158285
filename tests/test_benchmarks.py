"""The benchmark suite runs on a finished workspace and writes its figures; it asserts no speed (README)."""
import json
import shutil
import sys
import time
from pathlib import Path

from tests.conftest import REPO, run

sys.path.insert(0, str(REPO / "benchmarks"))
import workflow  # noqa: E402  (benchmarks/ is a folder of scripts)


def test_the_suite_measures_a_finished_workspace(finished, tmp_path):
    run([sys.executable, str(REPO / "benchmarks/suite.py"), "--seconds", "0.05", "--batch", "8", "--batches", "2", "--repeats", "1",
         "--cache-batches", "1", "--out", str(tmp_path)], finished)
    results = json.loads((tmp_path / "benchmarks.json").read_text())
    assert [r["run"] for r in results["kd_step"]] == ["student_kd", "student_kd_feature", "student_kd_v2_s0",
                                                      "student_kd_v2_s1", "gen3", "s3_kd", "s3_kd_half"]
    assert [r["run"] for r in results["latency"]] == ["teacher", "student_acb"]
    assert len(results["loading"]) == 16  # every distilled run, first seed
    for row in results["kd_step"]:
        assert row["ratio"] == row["kdlib_ms"] / row["bare_minimum_ms"] > 0
    for row in results["loading"]:
        assert row["load_over_train"] == row["load_img_s"] / row["train_img_s"] > 0
    cache = results["teacher_cache"]
    assert [r["teacher -> student"] for r in cache] == ["resnet56 -> resnet20", "resnet101 -> mobilenetv2"]
    for row in cache:
        assert row["epoch speed-up"] == row["live epoch s"] / row["replayed epoch s"] > 0
        assert row["sweep speed-up"] == row["sweep of 4 live s"] / row["sweep of 4 replayed s"] > 0
    dry = results["workflow"]["dry_runs"]
    assert dry["snakemake_n_up_to_date"] and dry["dvc_status_up_to_date"] and dry["snakemake_n_s"] > 0
    assert results["workflow"]["pipeline"] is None  # `make` never ran there
    ratios = results["summary"]["unfused_over_fused_latency"]
    assert ratios["min"] <= ratios["median"] <= ratios["max"]
    text = (tmp_path / "benchmarks.md").read_text()
    assert "| kd_step_over_bare_minimum " in text and "nothing to do" in text and "make` has not run here" in text


def test_make_records_the_pipeline_and_the_jobs_it_ran(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    log = tmp_path / "run.snakemake.log"
    log.write_text("...\n64 of 66 steps (97%) done\n...\n65 of 66 steps (98%) done\n")
    shutil.copy(REPO / "configs/tiny.yaml", "params.yaml")
    path = workflow.record_file("params.yaml")
    assert path == Path("results/tiny/pipeline_time.json")
    record = workflow.record_pipeline(path, 412, log)
    assert json.loads(path.read_text()) == record == workflow.pipeline_record("params.yaml")
    assert (record["seconds"], record["jobs_run"], record["jobs_in_dag"]) == (412, 65, 66)
    assert workflow.record_pipeline(path, 3, None)["jobs_run"] == 0  # nothing to do: Snakemake wrote no log


def test_a_job_logs_its_start_up_and_total_seconds(tmp_path, monkeypatch):
    from kdlib.cli import JOB_LOG, stage_main
    log = tmp_path / "jobs.jsonl"
    monkeypatch.setenv(JOB_LOG, str(log))
    monkeypatch.setattr(sys, "argv", ["stages/probe.py", "teacher", "--params", str(REPO / "configs/tiny.yaml")])
    stage_main("probe", lambda params, name: time.sleep(0.2))
    stage_main("probe", lambda params, name: None)
    first, second = (json.loads(line) for line in log.read_text().splitlines())
    assert (first["kind"], first["job"]) == ("probe", "teacher")
    assert 0 < first["startup_s"] and first["total_s"] - first["startup_s"] > 0.19 > second["total_s"] - second["startup_s"]


def test_seconds_by_stage_kind_add_up_the_job_log(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    log = tmp_path / "jobs.jsonl"
    log.write_text("".join(json.dumps(j) + "\n" for j in [
        {"kind": "train", "job": "a", "startup_s": 4.0, "total_s": 20.0},
        {"kind": "train", "job": "b", "startup_s": 3.0, "total_s": 10.0},
        {"kind": "export", "job": "a", "startup_s": 2.5, "total_s": 3.0}]))
    record = workflow.record_pipeline(tmp_path / "t.json", 30, None, log)
    assert record["by_kind"] == {"export": {"jobs": 1, "seconds": 3.0, "startup_seconds": 2.5},
                                 "train": {"jobs": 2, "seconds": 30.0, "startup_seconds": 7.0}}
    assert (record["job_seconds"], record["startup_seconds"], record["startup_share"]) == (33.0, 9.5, round(9.5 / 33, 3))
