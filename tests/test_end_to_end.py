"""The whole DAG on the tiny profile with Snakemake, then the DVC bookkeeping, then a params edit."""
import csv
import io
import json
import re

import pandas as pd
import torch
import yaml

from kdlib.config import load_params
from tests.conftest import DVC, SNAKEMAKE, assert_up_to_date, by_params, run, run_all, to_rerun

SEED003 = ("s3_kd", "s3_at", "s3_dkd", "s3_st", "s3_nst", "s3_reviewkd", "s3_kd_mse", "s3_stablekd_0", "s3_stablekd",
           "s3_kd_half", "s3_stablekd_half")
TRANSFORMERS = ("vit_teacher", "vit_stablekd")
# The teacher-output caches, each named after the first of the runs that replay it
CACHES = {"teacher_outputs_s3_dkd", "teacher_outputs_gen3"}


def table_rows(path):
    lines = [l for l in path.read_text().splitlines() if l.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return {cells[0]: dict(zip(header, cells)) for cells in
            ([c.strip() for c in l.strip("|").split("|")] for l in lines[2:])}


def test_tables_hold_the_computed_metrics(finished):
    rows = table_rows(finished / "results/tiny/tables/runs.md")
    assert set(rows) == {"teacher", "student", "student_acb", "student_kd", "student_kd_feature", "student_kd_v2_s0",
                         "student_kd_v2_s1", "gen3", "gen3_scratch", *SEED003, *TRANSFORMERS}
    for name, row in rows.items():
        metrics = json.loads((finished / f"results/tiny/runs/{name}/metrics.json").read_text())
        evaluation = json.loads((finished / f"results/tiny/runs/{name}/eval.json").read_text())
        # The export stage reloads the checkpoint and must reproduce the trainer's last evaluation; for ACB runs it
        # evaluates the fused deploy.pt, which must predict exactly what training ended with. s3_kd_half tests
        # half of every class during training (every other epoch): there the whole split is the export's alone.
        if name == "s3_kd_half":
            assert metrics["test_images"] == 178 and metrics["tested_every"] == 2  # round(n / 2) of each class
            tested = pd.read_csv(finished / "results/tiny/runs/s3_kd_half/history.csv")["test_acc"].notna().tolist()
            assert tested == [False, True, True]  # epoch 2, and the last
        else:
            assert evaluation["test_acc"] == metrics["final"]["test_acc"] and metrics["test_images"] == 359
        assert row["eval top-1 (%)"] == f"{evaluation['test_acc']:.2f}"
        assert row["train images"] == str(metrics["train_images"])
        assert row["test images (training / eval)"] == f"{metrics['test_images']} / {evaluation['num_test']}"
        assert row["best top-1 (%)"] == f"{metrics['best']['test_acc']:.2f}"
        assert row["epochs"] == str(metrics["epochs"]) and row["dataset"] == "digits"
        assert row["seed"] == str(metrics["seed"]) == ("1" if name.endswith("_s1") else "0")
        # Seed 003's students train 3 epochs, some decomposed for most of them: they need not beat chance yet.
        assert evaluation["num_test"] == 359 and (20 if name[:3] not in ("s3_", "vit") else 0) < evaluation["test_acc"] <= 100
    assert rows["teacher"]["model"] == "cifar_quick" and rows["student_kd"]["teacher"] == "teacher"
    assert rows["teacher"]["blocks"] == "acb" and rows["student"]["blocks"] == "base"

    ts = table_rows(finished / "results/tiny/tables/teacher_student.md")["student_kd"]
    student = json.loads((finished / "results/tiny/runs/student_kd/eval.json").read_text())["test_acc"]
    teacher = json.loads((finished / "results/tiny/runs/teacher/eval.json").read_text())["test_acc"]
    baseline = json.loads((finished / "results/tiny/runs/student/eval.json").read_text())["test_acc"]
    assert ts["scratch baseline"] == "student"
    assert ts["gap to teacher (pts)"] == f"{teacher - student:+.2f}"
    assert ts["KD gain (pts)"] == f"{student - baseline:+.2f}"

    report = (finished / "results/tiny/report.md").read_text()
    assert "# Results: `tiny` profile" in report and "scikit-learn digits" in report
    assert "1438 train / 359 test images" in report and "Budget: 3, 4 epochs per run; seed(s): 0, 1." in report
    assert (finished / "results/tiny/figures/test_accuracy.png").stat().st_size > 10_000


def acc(ws, name):
    return json.loads((ws / f"results/tiny/runs/{name}/eval.json").read_text())["test_acc"]


def test_seed000_tables_hold_the_computed_metrics(finished):
    t1 = table_rows(finished / "results/tiny/tables/seed000_table1.md")["student"]
    assert t1["teacher run"] == "teacher" and t1["student top-1"] == f"{acc(finished, 'student'):.2f}"
    assert t1["teacher top-1"] == f"{acc(finished, 'teacher'):.2f}"
    assert t1["top-1 ↑"] == f"{acc(finished, 'teacher') - acc(finished, 'student'):+.2f}"
    assert t1["seed 000 student"] == "83.72" and t1["seed 000 teacher"] == "88.96"  # the seed's LeNet row

    t2 = table_rows(finished / "results/tiny/tables/seed000_table2.md")["student"]
    fuse = json.loads((finished / "results/tiny/runs/student_acb/fuse.json").read_text())
    unfused = json.loads((finished / "results/tiny/runs/student_acb/metrics.json").read_text())["final"]["test_acc"]
    assert fuse["identical_predictions"] and fuse["fused_test_acc"] == fuse["unfused_test_acc"]
    assert fuse["fused_test_acc"] == unfused
    assert t2["ACB run"] == "student_acb" and t2["ACNet top-1 (fused)"] == f"{acc(finished, 'student_acb'):.2f}"
    assert t2["fused = unfused top-1"] == f"{unfused:.2f} = {unfused:.2f}"
    assert t2["ms/batch fused"] == f"{fuse['latency_ms_per_batch']['fused']:.2f}"
    assert float(t2["ms/batch unfused"]) > 0 and float(t2["ms/batch plain"]) > 0

    t3 = table_rows(finished / "results/tiny/tables/seed000_table3.md")["student"]
    assert t3["KD-logits top-1"] == f"{acc(finished, 'student_kd'):.2f}"
    assert t3["KD-feature top-1"] == f"{acc(finished, 'student_kd_feature'):.2f}"
    assert t3["KD-feature ↑"] == f"{acc(finished, 'student_kd_feature') - acc(finished, 'student'):+.2f}"
    assert (t3["seed 000 model"], t3["seed 000 KD-logits"], t3["seed 000 KD-feature"]) == ("LeNet", "85.98", "86.15")
    report = (finished / "results/tiny/report.md").read_text()
    assert "## Seed 000: ACNet and distillation" in report and "All 2 ACB runs were fused" in report
    assert (finished / "results/tiny/figures/seed000_curves.png").stat().st_size > 10_000


def test_students_learn_from_the_fused_teacher(finished):
    # The teacher's deploy.pt (what students load) gives the unfused teacher's logits on the test set.
    from kdlib.data.prepared import load_prepared
    from kdlib.engine.checkpoint import load_model
    images = load_prepared(finished / "data/tiny/digits").test.images[:64].float() / 255
    unfused, _ = load_model(finished / "results/tiny/runs/teacher/model.pt")
    fused, blob = load_model(finished / "results/tiny/runs/teacher/deploy.pt")
    assert blob["deployed"] and not any(type(m).__name__ == "ACBlock" for m in fused.modules())
    with torch.no_grad():
        a, b = unfused.eval()(images), fused.eval()(images)
    assert ((a - b).abs().max() / a.abs().max()).item() <= 1e-5
    history = pd.read_csv(finished / "results/tiny/runs/student_kd_feature/history.csv")
    assert history["alpha"].tolist() == [1.0, 0.5, 0.0]  # one epoch per phase
    assert history["train_ce"].iloc[0] == 0.0 and history["train_kd"].iloc[0] > 0


def test_both_tools_agree_nothing_is_left_to_do(finished):
    assert_up_to_date(finished)


def edited(ws, edit, single=False):
    """What each tool would re-run after `edit` to params.yaml (restored afterwards); with `single`, also what
    each would run for the one stage train_teacher, and what `dvc status` names before the edit is resolved."""
    params = ws / "params.yaml"
    original = params.read_text()
    raw = yaml.safe_load(original)
    edit(raw)
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    try:
        if not single:
            return to_rerun(ws)
        # Before the edit is resolved, DVC names its recipes stage only; then a single run by name, with either tool.
        unresolved = set(re.findall(r"^(\w+):$", run([DVC, "status"], ws).stdout, re.M))
        return to_rerun(ws, by_dvc=True) + to_rerun(ws, "train_teacher") + (unresolved,)
    finally:
        params.write_text(original)


def test_default_edit_spares_runs_that_override_it(finished):
    snake, dvc = edited(finished, lambda raw: raw["defaults"].update(epochs=5))
    expected = {f"{stage}_{run}" for run in ("student", "student_kd", "student_kd_feature", "student_kd_v2_s0",
                                             "student_kd_v2_s1", "gen3", "gen3_scratch", "s3_kd", "s3_at", "s3_dkd",
                                             "s3_st", "s3_nst", "s3_reviewkd", "s3_kd_mse", "s3_stablekd_0",
                                             "s3_kd_half")
                for stage in ("train", "export")}
    expected |= {"train_student_acb", "fuse_student_acb", "export_student_acb", "tables"} | CACHES
    # The teachers set their own epochs, the three StableKD runs theirs stage by stage; the caches follow their
    # students' epochs.
    assert snake == expected and dvc == by_params(expected)


def test_stage_edit_reruns_that_stablekd_stage_and_the_later_ones_only(finished):
    snake, dvc = edited(finished, lambda raw: raw["runs"]["s3_stablekd"]["distill"].update(stage_epochs=[1, 3]))
    assert snake == {"train_s3_stablekd", "export_s3_stablekd", "tables"}  # stage 0 kept
    assert dvc == by_params(snake)
    snake, dvc = edited(finished, lambda raw: raw["runs"]["s3_stablekd"]["distill"].update(stage_epochs=[2, 1]))
    assert snake == {"train_s3_stablekd_stage0", "train_s3_stablekd", "export_s3_stablekd",
                     "tables"}
    assert dvc == by_params(snake)


def test_transformer_student_is_decomposed_and_recomposed_through_chained_stage_checkpoints(finished):
    # ViT-T/8 from ViT-T/16: four stages of transformer layers and the head, 5 blocks, then 3 after recomposing.
    history = pd.read_csv(finished / "results/tiny/runs/vit_stablekd/history.csv")
    assert history["stage"].tolist() == [0, 1, 1] and history["blocks"].tolist() == [5, 3, 3]
    blob = torch.load(finished / "results/tiny/runs/vit_stablekd/model.pt", weights_only=True)
    assert blob["model"] == "vit_t_d8" and sum(".layers." in k and k.endswith("attn.qkv.weight")
                                               for k in blob["state_dict"]) == 8
    snake, dvc = edited(finished, lambda raw: raw["runs"]["vit_stablekd"]["distill"].update(stage_epochs=[1, 3]))
    assert snake == {"train_vit_stablekd", "export_vit_stablekd", "tables"}
    assert dvc == by_params(snake)
    snake, dvc = edited(finished, lambda raw: raw["runs"]["vit_teacher"].update(epochs=5))
    assert snake == {f"{stage}_{run}" for run in TRANSFORMERS for stage in ("train", "export")} | {
        "train_vit_stablekd_stage0", "tables"} and dvc == by_params(snake)


def test_seed003_tables_hold_the_computed_metrics(finished):
    t5 = table_rows(finished / "results/tiny/tables/seed003_table5.md")
    assert list(t5) == ["KD", "AT", "DKD", "ST", "NST", "ReviewKD", "KD + MSE", "StableKD-4/0", "StableKD-4/1"]
    assert t5["StableKD-4/1"]["3 epochs"] == f"{acc(finished, 's3_stablekd'):.2f}"
    assert t5["DKD"]["3 epochs"] == f"{acc(finished, 's3_dkd'):.2f}"
    assert [t5[s]["3 epochs"] for s in ("ST", "NST", "ReviewKD")] == [f"{acc(finished, r):.2f}" for r in
                                                                      ("s3_st", "s3_nst", "s3_reviewkd")]
    t2 = table_rows(finished / "results/tiny/tables/seed003_table2.md")
    assert list(t2) == ["KD", "StableKD-4/1"]
    assert t2["KD"]["50%"] == f"{acc(finished, 's3_kd_half'):.2f}" and t2["KD"]["100%"] == f"{acc(finished, 's3_kd'):.2f}"
    half = json.loads((finished / "results/tiny/runs/s3_kd_half/metrics.json").read_text())
    assert half["train_images"] == 719  # half of every class of the 1438 digits, rounded per class
    t4 = table_rows(finished / "results/tiny/tables/seed003_table4.md")["Acc. (%)"]
    assert t4["KD + MSE"] == f"{acc(finished, 's3_kd_mse'):.2f}" and t4["StableKD-4/0"] == f"{acc(finished, 's3_stablekd_0'):.2f}"
    t7 = table_rows(finished / "results/tiny/tables/seed003_table7.md")
    history = pd.read_csv(finished / "results/tiny/runs/s3_stablekd/history.csv")
    assert t7["KD"]["x KD"] == "1.00" and t7["StableKD-4/1"]["s per epoch (3 epochs)"] == f"{history['train_s'].mean():.2f}"
    # ST back-propagates through a backward pass: slower per epoch than KD here as in the seed (3.32 x KD).
    assert float(t7["ST"]["x KD"]) > 1 and t7["ST"]["seed 003 x KD (CIFAR-100)"] == "3.32"
    # Stage 0 trained 4 blocks, stage 1 (after one recomposition) 2; both stages' epochs are in the history.
    assert history["stage"].tolist() == [0, 1, 1] and history["blocks"].tolist() == [4, 2, 2]
    assert "## Seed 003: StableKD" in (finished / "results/tiny/report.md").read_text()
    assert (finished / "results/tiny/figures/seed003_curves.png").stat().st_size > 10_000
    # The deployed student is the plain half-width cifar_quick: the projectors were folded away.
    blob = torch.load(finished / "results/tiny/runs/s3_stablekd/model.pt", weights_only=True)
    assert not any("enter" in k or "leave" in k for k in blob["state_dict"]) and blob["width"] == 0.5


def test_distill_edit_spares_the_scratch_baseline(finished):
    snake, dvc = edited(finished, lambda raw: raw["runs"]["gen3"].update(distill={"alpha": 0.5}))
    assert snake == {"train_gen3", "export_gen3", "tables"} and dvc == by_params(snake)


def test_seed001_and_seed002_tables_hold_the_computed_metrics(finished):
    v2 = [acc(finished, f"student_kd_v2_s{s}") for s in (0, 1)]
    teacher, v1 = acc(finished, "teacher"), acc(finished, "student_kd")
    mean, std = sum(v2) / 2, abs(v2[0] - v2[1]) / 2 ** 0.5
    t6 = table_rows(finished / "results/tiny/tables/seed001_table6.md")
    assert t6["Student"]["run"] == "student_kd_v2" and t6["Student"]["top-1 (%)"] == f"{mean:.2f} ± {std:.2f} (n=2)"
    assert t6["Teacher"]["top-1 (%)"] == f"{teacher:.2f}"
    t4 = table_rows(finished / "results/tiny/tables/seed001_table4.md")
    assert t4["Student"]["gap from teacher (pts)"] == f"{v1 - teacher:+.2f}"
    t7 = table_rows(finished / "results/tiny/tables/seed001_table7.md")
    assert t7["Accuracy (%)"]["improvement"] == f"{mean - v1:+.2f} ± {std:.2f} (n=2)"
    t3 = table_rows(finished / "results/tiny/tables/seed002_task3.md")
    assert [row["run"] for row in t3.values()] == ["teacher", "student_kd", "gen3"]
    assert t3["3"]["top-1 (%)"] == f"{acc(finished, 'gen3'):.2f}"
    assert t3["3"]["scratch top-1 (%)"] == f"{acc(finished, 'gen3_scratch'):.2f}"
    assert t3["2"]["teacher"] == "teacher" and t3["3"]["teacher"] == "student_kd"
    t1 = table_rows(finished / "results/tiny/tables/seed002_task1.md")
    assert (t1["distilled"]["run"], t1["scratch"]["run"]) == ("student_kd", "student")
    report = (finished / "results/tiny/report.md").read_text()
    for heading in ("## Seed 001", "### Table 7", "## Seed 002", "### Task 3", "![predictions]"):
        assert heading in report
    for figure in ("seed001_loss_curves", "seed002_accuracy_params", "seed002_predictions"):
        assert (finished / f"results/tiny/figures/{figure}.png").stat().st_size > 10_000
    top3 = json.loads((finished / "results/tiny/runs/student_kd/samples.json").read_text())["top3"]
    assert len(top3) == 24 and all(len(s["classes"]) == 3 and s["probs"] == sorted(s["probs"], reverse=True)
                                   for s in top3)


def test_lr_edit_names_exactly_the_run_and_its_descendants(finished):
    snake, dvc, single, dvc_single, unresolved = edited(
        finished, lambda raw: raw["runs"]["teacher"].update(optimizer={"lr": 0.02}), single=True)
    # Its students, every seed and StableKD stage of them, and gen3, which learns from one of them.
    expected = {"train_teacher", "fuse_teacher", "export_teacher", "tables",
                "train_s3_stablekd_stage0", "train_s3_stablekd_half_stage0"} | CACHES
    expected |= {f"{stage}_{run}" for run in ("student_kd", "student_kd_feature", "student_kd_v2_s0", "student_kd_v2_s1",
                                              "gen3", *SEED003) for stage in ("train", "export")}
    assert snake == expected and dvc == by_params(expected)
    assert single == dvc_single == {"train_teacher"} and unresolved == {"recipes"}
    assert "Nothing to be done" in run([SNAKEMAKE, "-n"], finished).stdout


def test_dense_tables_hold_the_computed_metrics(finished):
    from skimage.color import rgb2ycbcr
    from skimage.metrics import peak_signal_noise_ratio
    sr = table_rows(finished / "results/tiny/tables/seed002_sr_tiny.md")
    assert list(sr) == ["bicubic", "student (no KD)", "student (KD)", "teacher"]
    for label, role in (("student (no KD)", "scratch"), ("student (KD)", "kd"), ("teacher", "teacher")):
        metrics = json.loads((finished / f"results/tiny/dense/sr_tiny/{role}/metrics.json").read_text())
        history = pd.read_csv(finished / f"results/tiny/dense/sr_tiny/{role}/history.csv")
        assert sr[label]["PSNR-Y (dB)"] == f"{metrics['final']['psnr_y']:.2f}" == f"{history['psnr_y'].iloc[-1]:.2f}"
        assert sr[label]["SSIM-Y"] == f"{metrics['final']['ssim_y']:.4f}" and len(history) == 2
    assert sr["student (KD)"]["model"] == "attention_srnet" and sr["teacher"]["model"] == "swinir"
    # The bicubic row, recomputed with scikit-image: Y of the 8-bit upscaled image, 4 border pixels cropped.
    test = torch.load(finished / "data/tiny/dense/sr_tiny/test.pt", weights_only=True)
    up = torch.nn.functional.interpolate(test["lr"][0][None].float() / 255, scale_factor=4, mode="bicubic",
                                         align_corners=False).clamp(0, 1)
    up = (up[0] * 255).round().permute(1, 2, 0).numpy() / 255
    y_up, y_hr = (rgb2ycbcr(img)[4:-4, 4:-4, 0] for img in (up, test["hr"][0].permute(1, 2, 0).numpy() / 255))
    assert test["hr"][0].shape == (3, 48, 48) and test["lr"][0].shape == (3, 12, 12)
    assert sr["bicubic"]["PSNR-Y (dB)"] == f"{peak_signal_noise_ratio(y_hr, y_up, data_range=255):.2f}"
    # The deployed student is the student alone: the projector trained beside it is not in model.pt.
    student = torch.load(finished / "results/tiny/dense/sr_tiny/kd/model.pt", weights_only=True)["state_dict"]
    scratch = torch.load(finished / "results/tiny/dense/sr_tiny/scratch/model.pt", weights_only=True)["state_dict"]
    assert student.keys() == scratch.keys()

    edges = table_rows(finished / "results/tiny/tables/seed002_edges_tiny.md")
    assert list(edges) == ["teacher", "student (no KD)", "student (KD)"]
    for label, role in (("teacher", "teacher"), ("student (no KD)", "scratch"), ("student (KD)", "kd")):
        history = pd.read_csv(finished / f"results/tiny/dense/edges_tiny/{role}/history.csv").set_index("epoch")
        metrics = json.loads((finished / f"results/tiny/dense/edges_tiny/{role}/metrics.json").read_text())
        assert [edges[label][f"Dice ep. {k}"] for k in (1, 2, 3)] == [f"{history.loc[k, 'dice']:.4f}" for k in (1, 2, 3)]
        assert edges[label]["ODS F"] == f"{metrics['final']['ods_f']:.4f}"
    assert edges["teacher"]["model"] == "U-Net resnet34" and edges["student (KD)"]["model"] == "U-Net mobilenet_v2"
    report = (finished / "results/tiny/report.md").read_text()
    assert "## Seed 002: dense tasks" in report and "![edges_tiny](figures/seed002_edges_tiny.png)" in report
    for figure in ("seed002_sr_tiny", "seed002_edges_tiny"):
        assert (finished / f"results/tiny/figures/{figure}.png").stat().st_size > 10_000


def test_dense_edits_rerun_only_the_roles_that_read_the_key(finished):
    # A retrained student is exported again: Snakemake plans it at once, DVC once the checkpoint has changed.
    snake, dvc = edited(finished, lambda raw: raw["dense"]["edges_tiny"]["distill"].update(alpha=0.7))
    assert dvc == {"train_dense_edges_tiny_kd", "tables"} and snake == dvc | {"export_dense_edges_tiny_kd"}
    snake, dvc = edited(finished, lambda raw: raw["dense"]["sr_tiny"]["teacher"].update(epochs=3))
    assert dvc == {"train_dense_sr_tiny_teacher", "train_dense_sr_tiny_kd", "tables"}
    assert snake == dvc | {"export_dense_sr_tiny_kd"}
    snake, dvc = edited(finished, lambda raw: raw["dense"]["sr_tiny"]["data"].update(blur_sigma=1.5))
    assert dvc == {"prepare_dense_sr_tiny", *(f"train_dense_sr_tiny_{r}" for r in ("teacher", "scratch", "kd")),
                   "tables"}
    assert snake == dvc | {"export_dense_sr_tiny_scratch", "export_dense_sr_tiny_kd"}


def test_a_dvc_experiment_reruns_the_edited_run_only_and_shows_its_numbers(finished):
    """The README's `dvc exp` section on the tiny profile: one setting changed for one stage, in a temporary copy
    (the workspace keeps its results), then the table of what changed."""
    gitignore = finished / ".gitignore"
    if "__pycache__/" not in gitignore.read_text():
        gitignore.write_text(gitignore.read_text() + "__pycache__/\n")
    run(["git", "add", "-A"], finished)
    run(["git", "commit", "-q", "--allow-empty", "-m", "tiny pipeline"], finished)
    # `+`: a key the run's entry does not have yet (it takes the default's epochs). (Not `student`, which is
    # student_kd's scratch baseline: with other epochs it no longer is, and a new baseline changes the stages.)
    out = run([DVC, "exp", "run", "--temp", "-S", "+runs.student_acb.epochs=2", "train_student_acb"], finished).stdout
    assert set(re.findall(r"Running stage '(\w+)'", out)) == {"recipes", "train_student_acb"}, out
    rows = list(csv.DictReader(io.StringIO(run([DVC, "exp", "show", "--csv"], finished).stdout)))
    metrics = [c for c in rows[0] if ".json:" in c and not c.startswith("results/tiny/recipes/")]
    # Numbers only: every metric of the baseline reads as one (per-class accuracies, losses, counts).
    assert metrics and all(rows[0][c] == "" or float(rows[0][c]) == float(rows[0][c]) for c in metrics)
    assert not [c for c in metrics if c.rsplit(":", 1)[1] in ("run", "model", "block_type", "teacher", "checkpoint")]
    changed = list(csv.DictReader(io.StringIO(run([DVC, "exp", "show", "--csv", "--only-changed"], finished).stdout)))
    columns = {c for c in changed[0] if ":" in c or c.startswith("runs.")}
    acb_metrics = "results/tiny/runs/student_acb/metrics.json"
    assert "runs.student_acb.epochs" in columns and f"{acb_metrics}:epochs" in columns
    assert {c.split(":")[0] for c in columns if ".json:" in c} == {acb_metrics}
    experiment = changed[-1]
    assert experiment["runs.student_acb.epochs"] == "2" and experiment[f"{acb_metrics}:epochs"] == "2"
    assert experiment[f"{acb_metrics}:final.epoch"] == "2"
    # The headline accuracy of every run in one row each: the columns a pattern keeps.
    kept = run([DVC, "exp", "show", "--csv", "--drop", ".*", "--keep", "Experiment|.*/eval.json:test_acc"], finished)
    header = next(csv.reader(io.StringIO(kept.stdout)))
    assert header[1:] == [f"results/tiny/runs/{n}/eval.json:test_acc" for n in load_params(finished / "params.yaml").runs]
    assert_up_to_date(finished)
