"""The benchmark suite runs on a finished workspace and writes its figures; it asserts no speed (README)."""
import json
import sys

from tests.conftest import REPO, run

sys.path.insert(0, str(REPO / "benchmarks"))
import workflow  # noqa: E402  (benchmarks/ is a folder of scripts)


def test_the_suite_measures_a_finished_workspace(finished, tmp_path):
    run([sys.executable, str(REPO / "benchmarks/suite.py"), "--seconds", "0.05", "--batches", "2", "--repeats", "1",
         "--out", str(tmp_path)], finished)
    results = json.loads((tmp_path / "benchmarks.json").read_text())
    assert [r["run"] for r in results["kd_step"]] == ["student_kd", "student_kd_feature", "student_kd_v2_s0",
                                                      "student_kd_v2_s1", "gen3", "s3_kd", "s3_kd_half"]
    assert [r["run"] for r in results["latency"]] == ["teacher", "student_acb"]
    assert len(results["loading"]) == 12  # every distilled run, first seed
    for row in results["kd_step"]:
        assert row["ratio"] == row["kdlib_ms"] / row["bare_minimum_ms"] > 0
    for row in results["loading"]:
        assert row["load_over_train"] == row["load_img_s"] / row["train_img_s"] > 0
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
    record = workflow.record_pipeline(412, log)
    assert json.loads((tmp_path / "results/pipeline_time.json").read_text()) == record == workflow.pipeline_record()
    assert (record["seconds"], record["jobs_run"], record["jobs_in_dag"]) == (412, 65, 66)
    assert workflow.record_pipeline(3, None)["jobs_run"] == 0  # nothing to do: Snakemake wrote no log
