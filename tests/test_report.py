"""Report tables from known results: mean ± std over seeds, seed-by-seed differences, seed 001 and 002 tables."""
import json
import math

import pandas as pd
import pytest

from kdlib.config import DENSE_STUDENTS, load_params, streams
from kdlib.errors import KDError
from kdlib.report import efficiency, seed001, seed002, seed003
from kdlib.report.results import Results, cell, combine
from kdlib.report.overview import runs_table, teacher_student_table
from tests.conftest import TINY
from tests.test_end_to_end import table_rows
from tests.test_export import markdown_tables


def test_one_seed_prints_plainly_several_print_mean_std_and_count():
    assert cell({0: 53.1}) == "53.10"
    # mean 53, sample std sqrt((9 + 1 + 16) / 2) = sqrt(13) = 3.606
    assert cell({0: 50.0, 1: 52.0, 2: 57.0}) == "53.00 ± 3.61 (n=3)"
    assert cell({0: -4.0, 1: -6.0}, "+.2f") == "-5.00 ± 1.41 (n=2)"
    assert cell({0: 93.75, 1: 95.0}, ".1f", "%") == "94.4% ± 0.9 (n=2)"  # the std at the mean's precision
    assert cell(None) == "-" and cell({}) == "-" and cell({0: math.nan}) == "n/a"


def test_differences_pair_seeds_and_a_shared_teacher_pairs_with_each():
    student, teacher = {0: 70.0, 1: 72.0, 2: 74.0}, {None: 80.0}  # None: a run without seeds, shared by all
    assert combine(lambda s, t: s - t, student, teacher) == {0: -10.0, 1: -8.0, 2: -6.0}
    assert combine(lambda a, b: a - b, {0: 5.0, 1: 6.0, 2: 9.0}, {1: 1.0, 2: 2.0}) == {1: 5.0, 2: 7.0}
    # A student with seeds [1] learns from its teacher's seed-1 run: only that pair counts.
    assert combine(lambda s, t: s - t, {1: 70.0}, {0: 80.0, 1: 81.0, 2: 82.0}) == {1: -11.0}
    assert combine(lambda a, b: a - b, {0: 1.0}, {3: 2.0}) == {}


SEED003 = {"s3_kd": 71.0, "s3_at": 69.0, "s3_dkd": 72.0, "s3_st": 70.5, "s3_nst": 70.0, "s3_reviewkd": 72.5,
           "s3_kd_mse": 73.0, "s3_stablekd_0": 66.0, "s3_stablekd": 75.0, "s3_kd_half": 61.0, "s3_stablekd_half": 68.0}
ACC = {"teacher": 80.0, "student": 60.0, "student_acb": 62.0, "student_kd": 70.0, "student_kd_feature": 65.0,
       "student_kd_v2_s0": 74.0, "student_kd_v2_s1": 76.0, "gen3": 58.0, "gen3_scratch": 50.0, **SEED003,
       "vit_teacher": 40.0, "vit_stablekd": 35.0}
PARAMS = {"teacher": 200_000, "student": 50_000, "student_acb": 52_000, "student_kd": 50_000,
          "student_kd_feature": 50_000, "student_kd_v2_s0": 50_000, "student_kd_v2_s1": 50_000, "gen3": 12_500,
          "gen3_scratch": 12_500, **{name: 20_000 for name in SEED003}, "vit_teacher": 300_000, "vit_stablekd": 200_000}
SECONDS = {"s3_kd": [2.0, 2.2], "s3_stablekd": [2.1, 2.5], "s3_st": [6.0, 6.6]}  # training seconds per epoch


@pytest.fixture
def known(tmp_path, monkeypatch):
    """The tiny profile's runs with made-up results on disk (the teacher an ACB run of 250k, 200k fused)."""
    params = load_params(TINY)
    assert set(params.runs) == set(ACC)
    monkeypatch.chdir(tmp_path)
    for name, acc in ACC.items():
        folder = tmp_path / "results/tiny/runs" / name
        folder.mkdir(parents=True)
        blocks = params.runs[name].block_type
        train_params = 250_000 if name == "teacher" else PARAMS[name]
        (folder / "metrics.json").write_text(json.dumps(
            {"params": train_params, "best": {"test_acc": acc, "epoch": 2}, "final": {"test_acc": acc},
             "train_images": 100, "test_images": 50}))
        (folder / "eval.json").write_text(json.dumps({"test_acc": acc, "num_test": 80}))
        (folder / "samples.json").write_text(json.dumps({"checkpoint": "model.pt", "top3": []}))
        stablekd = {"stage": [0, 1], "blocks": [4, 2]} if name.startswith(("s3_stablekd", "vit_stablekd")) else {}
        pd.DataFrame({"epoch": [1, 2], "test_acc": [acc - 5, acc], "train_loss": [2.0, 1.0], "test_loss": [2.5, 1.5],
                      "train_s": SECONDS.get(name, [1.0, 1.0]), **stablekd}).to_csv(folder / "history.csv", index=False)
        if blocks == "acb":
            (folder / "fuse.json").write_text(json.dumps({"params": {"fused": PARAMS[name]}}))
        (folder / "export.json").write_text(json.dumps(export_of(name, acb=blocks == "acb")))
    for name, exp in params.dense.items():
        for role in DENSE_STUDENTS:
            folder = tmp_path / "results/tiny/dense" / name / role
            folder.mkdir(parents=True)
            (folder / "export.json").write_text(json.dumps(dense_export_of(exp.task)))
    for stream in streams(params):  # the teacher-output caches' records: 0.9 s of teacher passes over 3 epochs
        folder = tmp_path / params.layout.teacher_outputs_dir(stream)
        folder.mkdir(parents=True)
        (folder / "stream.json").write_text(json.dumps({"teacher_seconds": 0.9, "shape": [3, 100, 10]}))
    return params, Results(params)


def dense_export_of(task: str) -> dict:
    """Made-up export.json of a dense student: onnxruntime 5x faster than eager."""
    parity = ({"psnr_y_pytorch": 25.12345, "psnr_y_onnx": 25.12344, "max_abs_pixel_diff": 2e-7} if task ==
              "super_resolution" else {"dice_pytorch": 0.61234, "dice_onnx": 0.61234, "max_abs_prob_diff": 3e-7})
    return {"model": "net", "image_shape": [3, 12, 12], "params": 8000, "flops": 5_200_000, "checkpoint_bytes": 43_000,
            "onnx": {"bytes": 41_000}, "parity": parity, "latency_ms": {"batch_1": {"eager": 1.0, "onnxruntime": 0.2}}}


def export_of(name: str, acb: bool) -> dict:
    """Made-up export.json: onnxruntime 4x faster than eager at batch 1, 2x at 64; the unfused form 1.5x slower."""
    def form(params, scale):
        return {"params": params, "flops": 8 * params, "checkpoint_bytes": 4 * params, "onnx_bytes": 4 * params + 900,
                "latency_ms": {"batch_1": {"eager": 2.0 * scale, "onnxruntime": 0.5 * scale},
                               "batch_64": {"eager": 40.0 * scale, "onnxruntime": 20.0 * scale}}}
    forms = {"deployed": form(PARAMS[name], 1.0), **({"unfused": form(250_000, 1.5)} if acb else {})}
    return {"onnx": {"bytes": 4 * PARAMS[name] + 900, "opset": 18}, "threads": 2, "torch": "2.x", "onnxruntime": "1.x",
            "latency_seconds": 1.0, "image_shape": [3, 16, 16],
            "parity": {"max_abs_logit_diff": 2.5e-6, "tolerance": 1e-4}, "forms": forms}


def rows_of(text, tmp_path):
    path = tmp_path / "t.md"
    path.write_text(text)
    return table_rows(path)


def test_teacher_student_table_over_seeds(known, tmp_path):
    params, res = known
    rows = rows_of(teacher_student_table(params, res), tmp_path)
    v2 = rows["student_kd_v2"]
    assert v2["teacher top-1 (%)"] == "80.00" and v2["distilled top-1 (%)"] == "75.00 ± 1.41 (n=2)"
    assert v2["gap to teacher (pts)"] == "+5.00 ± 1.41 (n=2)"  # 80 - 74, 80 - 76
    assert v2["scratch baseline"] == "-"  # its recipe differs from `student`'s
    kd = rows["student_kd"]
    assert kd["scratch baseline"] == "student" and kd["KD gain (pts)"] == "+10.00"
    assert rows["gen3"]["scratch baseline"] == "gen3_scratch" and rows["gen3"]["KD gain (pts)"] == "+8.00"
    assert rows["gen3"]["teacher"] == "student_kd"


def test_runs_table_states_the_images_each_run_used(known, tmp_path):
    params, res = known
    rows = rows_of(runs_table(params, res), tmp_path)
    assert rows["student"]["train images"] == "100" and rows["student"]["test images (training / eval)"] == "50 / 80"
    assert rows["student"]["eval top-1 (%)"] == f"{ACC['student']:.2f}"


def test_efficiency_table(known, tmp_path):
    params, res = known
    text = efficiency.efficiency_table(params, res)
    assert text.startswith("CPU, 2 threads for PyTorch 2.x (eager) and onnxruntime 1.x (intra-op), batches of 3x16x16")
    (tmp_path / "e.md").write_text(text)
    deployed, fusion, dense = markdown_tables(tmp_path / "e.md")
    teacher, gen3 = deployed["teacher"], deployed["gen3"]
    assert (teacher["role"], deployed["student_kd"]["role"], gen3["role"]) == ("teacher", "teacher", "student")
    assert teacher["params (M)"] == "0.200" and teacher["MFLOPs"] == "1.6" and teacher["checkpoint (kB)"] == "800"
    assert gen3["ONNX (kB)"] == "51" and gen3["max abs Δ logit"] == "2.5e-06"  # 4 x 12500 + 900 bytes
    assert gen3["eager b1 (ms)"] == "2.00" and gen3["eager/ort b1"] == "4.00" and gen3["eager/ort b64"] == "2.00"
    assert list(deployed) == list(params.written) and set(fusion) == {"teacher", "student_acb"}
    assert fusion["teacher"]["params (M)"] == "0.250 → 0.200" and fusion["student_acb"]["checkpoint (kB)"] == "1000 → 208"
    assert fusion["teacher"]["onnxruntime b64 (ms)"] == "30.00 → 20.00 (1.50x)"
    assert list(dense) == ["sr_tiny (scratch)", "sr_tiny (kd)", "edges_tiny (scratch)", "edges_tiny (kd)"]
    sr, edges = dense["sr_tiny (kd)"], dense["edges_tiny (scratch)"]
    assert sr["PyTorch / ONNX (held-out)"] == "PSNR-Y 25.123 / 25.123 dB" and sr["max abs Δ output"] == "2.0e-07"
    assert edges["PyTorch / ONNX (held-out)"] == "Dice 0.6123 / 0.6123" and edges["eager/ort b1"] == "5.00"
    assert sr["params (M)"] == "0.008" and sr["MFLOPs"] == "5.2" and sr["ONNX (kB)"] == "41"


def test_seed001_tables(known, tmp_path):
    params, res = known
    t6 = rows_of(seed001.version_table(params, res, "v2"), tmp_path)
    assert t6["Teacher"]["top-1 (%)"] == "80.00" and t6["Student"]["top-1 (%)"] == "75.00 ± 1.41 (n=2)"
    assert t6["Student"]["gap from teacher (pts)"] == "-5.00 ± 1.41 (n=2)"
    assert t6["Student"]["seed 001 top-1"] == "74.21" and t6["Student"]["seed 001 gap"] == "-1.55"
    t4 = rows_of(seed001.version_table(params, res, "v1"), tmp_path)
    assert t4["Student"]["gap from teacher (pts)"] == "-10.00"
    t7 = rows_of(seed001.comparison_table(params, res), tmp_path)
    assert t7["Accuracy (%)"]["improvement"] == "+5.00 ± 1.41 (n=2)"  # 74 - 70, 76 - 70
    assert t7["Gap from teacher (pts)"]["improvement"] == "50% reduction of the mean gap"  # 1 - 5 / 10
    # retention 100 * 70 / 80 = 87.5; 92.5 and 95.0 -> 93.75 ± 1.77; improvement 5.0 and 7.5
    assert t7["Teacher retention (%)"]["version 1 (student_kd)"] == "87.5"
    assert t7["Teacher retention (%)"]["version 2 (student_kd_v2)"] == "93.8 ± 1.8 (n=2)"
    assert t7["Teacher retention (%)"]["improvement"] == "+6.2 ± 1.8 (n=2)"
    t8 = rows_of(seed001.efficiency_table(params, res), tmp_path)
    assert t8["Parameters"]["teacher (teacher)"] == "0.200M"  # fused, not the 250k it trained with
    assert t8["Parameters"]["ratio"] == "4.0x smaller"
    assert t8["Accuracy (%)"]["ratio"] == "93.8% ± 1.8 (n=2) retained"


def test_seed002_tables(known, tmp_path):
    params, res = known
    t1 = rows_of(seed002.task1_table(params, res), tmp_path)
    assert t1["teacher"]["run"] == "teacher" and t1["teacher"]["compression"] == "1.0x"
    assert t1["distilled"]["run"] == "student_kd" and t1["distilled"]["top-1 (%)"] == "70.00"
    assert t1["scratch"]["run"] == "student" and t1["scratch"]["top-1 (%)"] == "60.00"
    assert t1["distilled"]["compression"] == "4.0x" and t1["scratch"]["seed 002 top-1"] == "61.03"
    t3 = rows_of(seed002.task3_table(params, res), tmp_path)
    assert [r["run"] for r in t3.values()] == ["teacher", "student_kd", "gen3"]
    gen3 = t3["3"]
    assert gen3["teacher"] == "student_kd" and gen3["params"] == "0.013M" and gen3["compression"] == "16.0x"
    assert gen3["scratch top-1 (%)"] == "50.00" and gen3["KD gain (pts)"] == "+8.00"
    assert gen3["seed 002 compression"] == "54x"


def test_gap_change_says_whether_the_gap_shrank_or_grew():
    assert seed001.gap_change(-10.0, -5.0) == "50% reduction of the mean gap"
    assert seed001.gap_change(-24.03, -27.13) == "mean gap grew 13%"
    assert seed001.gap_change(-5.0, 2.0) == seed001.gap_change(0.0, -1.0) == "n/a: the mean gap is zero or changes sign"


def test_seed003_tables(known, tmp_path):
    params, res = known
    study = seed003.Study(params, res)
    assert study.schemes == ["KD", "AT", "DKD", "ST", "NST", "ReviewKD", "KD + MSE", "StableKD-4/0",
                             "StableKD-4/1"]  # labels from the methods table, k from the history
    assert study.budgets == [3]
    t5 = rows_of(seed003.budget_table(study), tmp_path)
    assert t5["StableKD-4/1"]["3 epochs"] == "75.00" and t5["KD"]["3 epochs"] == "71.00"
    assert t5["KD"]["seed 003 (20 / 60 / 200 epochs)"] == "72.49 / 76.19 / 78.07"
    t2 = rows_of(seed003.data_table(study), tmp_path)
    assert list(t2) == ["KD", "StableKD-4/1"]
    assert (t2["KD"]["50%"], t2["KD"]["100%"]) == ("61.00", "71.00")
    assert (t2["StableKD-4/1"]["50%"], t2["StableKD-4/1"]["100%"]) == ("68.00", "75.00")
    t4 = rows_of(seed003.ablation_table(study), tmp_path)["Acc. (%)"]
    assert (t4["KD"], t4["KD + MSE"], t4["StableKD-4/0"], t4["StableKD-4/1"]) == ("71.00", "73.00", "66.00", "75.00")
    t7 = rows_of(seed003.time_table(study), tmp_path)
    # KD replays its cache: 2.1 s per epoch, plus the 0.3 s per epoch its teacher took in the cache stage.
    assert t7["KD"]["s per epoch (3 epochs)"] == "2.40" and t7["StableKD-4/1"]["x KD"] == f"{2.3 / 2.4:.2f}"
    assert t7["ST"]["x KD"] == f"{6.3 / 2.4:.2f}" and t7["ST"]["seed 003 x KD (CIFAR-100)"] == f"{120.6 / 36.3:.2f}"
    assert t7["StableKD-4/1"]["seed 003 x KD (CIFAR-100)"] == "-"  # the seed timed StableKD-5/2 only


def test_seed003_runs_must_fill_distinct_cells(known):
    params, res = known
    twin = params.model_copy(update={"report": params.report.model_copy(update={"seed003": params.report.seed003.model_copy(
        update={"runs": ["s3_kd", "s3_at", "student_kd"]})})})
    with pytest.raises(KDError, match="'s3_kd' and 'student_kd' are both KD with 3 epochs on 100% of the data"):
        seed003.Study(twin, res)