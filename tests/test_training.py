"""Determinism, exact resume after SIGKILL, and the NaN guard, on the tiny digits profile."""
import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch
import yaml

from kdlib.config import load_params, stream_name
from kdlib.distill.distiller import Distiller
from kdlib.distill.teacher_outputs import write
from kdlib.engine.trainer import train
from kdlib.errors import KDError
from kdlib.reparam.deploy import fuse_run
from tests.conftest import make_workspace

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    ws = make_workspace(tmp_path_factory.mktemp("train"))
    subprocess.run([sys.executable, "stages/prepare.py", "digits"], cwd=ws, check=True, capture_output=True,
                   env={**os.environ, "PYTHONPATH": str(ws)})
    return ws


def clone(prepared, tmp_path, edit=None):
    """A workspace sharing the prepared data, with an optional edit of its params."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "data").symlink_to(prepared / "data")
    raw = yaml.safe_load((prepared / "params.yaml").read_text())
    if edit:
        edit(raw)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    for item in ("stages", "kdlib"):
        (tmp_path / item).symlink_to(prepared / item)
    return tmp_path


def outcome(ws, run):
    folder = ws / "results" / "tiny" / "runs" / run
    history = pd.read_csv(folder / "history.csv").drop(columns=["time_s", "train_s"])
    weights = torch.load(folder / "model.pt", weights_only=True)["state_dict"]
    return json.loads((folder / "metrics.json").read_text()), history, weights


def same(a, b):
    (ma, ha, wa), (mb, hb, wb) = a, b
    assert ma == mb
    pd.testing.assert_frame_equal(ha, hb, check_exact=True)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_same_seed_gives_identical_metrics(prepared, tmp_path, monkeypatch):
    results = []
    for i in range(2):
        ws = clone(prepared, tmp_path / str(i))
        monkeypatch.chdir(ws)
        train("student", load_params("params.yaml"), CPU)
        results.append(outcome(ws, "student"))
    same(*results)
    assert results[0][0]["final"]["test_acc"] > 50  # it learned something (10 classes)


def test_testing_every_other_epoch_on_half_the_test_split_trains_the_same_model(prepared, tmp_path, monkeypatch):
    sparse = lambda raw: raw["runs"]["student"].update(epochs=3, evaluation={"every": 2, "test_fraction": 0.5})  # noqa: E731
    dense = lambda raw: raw["runs"]["student"].update(epochs=3)  # noqa: E731
    results = []
    for label, edit in (("dense", dense), ("sparse", sparse)):
        ws = clone(prepared, tmp_path / label, edit)
        monkeypatch.chdir(ws)
        train("student", load_params("params.yaml"), CPU)
        results.append(outcome(ws, "student"))
    (m1, h1, w1), (m2, h2, w2) = results
    assert all(torch.equal(w1[k], w2[k]) for k in w1)  # testing draws no randomness: the same weights
    tested = h2["test_acc"].notna().tolist()
    assert tested == [False, True, True]  # epoch 2, and the last epoch always
    pd.testing.assert_frame_equal(h1.drop(columns=["test_loss", "test_acc"]), h2.drop(columns=["test_loss", "test_acc"]))
    test = json.loads((prepared / "data/tiny/digits/meta.json").read_text())["num_test"]
    per_class = pd.Series(torch.load(prepared / "data/tiny/digits/test.pt", weights_only=True)["labels"]).value_counts()
    assert (m1["test_images"], m2["test_images"]) == (test, sum(max(1, round(0.5 * n)) for n in per_class))
    assert (m1["tested_every"], m2["tested_every"]) == (1, 2)
    assert m2["best"]["epoch"] in (2, 3) and m2["best"]["test_acc"] == h2["test_acc"].max()
    assert m2["final"]["test_acc"] == h2["test_acc"].iloc[-1]


def test_kill_and_resume_matches_uninterrupted_run(prepared, tmp_path):
    longer = lambda raw: raw["runs"]["teacher"].update(epochs=5)  # noqa: E731
    reference, killed = (clone(prepared, tmp_path / d, longer) for d in ("reference", "killed"))
    env = {**os.environ, "PYTHONPATH": str(prepared), "KDLIB_DEVICE": "cpu"}
    cmd = [sys.executable, "stages/train.py", "teacher"]
    uninterrupted = subprocess.Popen(cmd, cwd=reference, env=env, stdout=subprocess.DEVNULL)  # one thread each

    proc = subprocess.Popen(cmd, cwd=killed, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = killed / "results/tiny/runs/teacher/last.pt"
    deadline = time.time() + 120
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)  # mid-way through epoch 2
    proc.wait()
    assert last.exists() and not (killed / "results/tiny/runs/teacher/model.pt").exists()
    assert torch.load(last, weights_only=True)["epoch"] < 5

    resumed = subprocess.run(cmd, cwd=killed, env=env, check=True, capture_output=True, text=True)
    assert "continuing after epoch" in resumed.stdout
    assert uninterrupted.wait() == 0
    same(outcome(reference, "teacher"), outcome(killed, "teacher"))
    assert not last.exists()


def test_stale_resume_checkpoint_is_ignored(prepared, tmp_path, monkeypatch):
    ws = clone(prepared, tmp_path)
    monkeypatch.chdir(ws)
    last = ws / "results/tiny/runs/student/last.pt"
    last.parent.mkdir(parents=True)
    torch.save({"epoch": 1, "fingerprint": "params that changed since", "history": []}, last)
    train("student", load_params("params.yaml"), CPU)
    assert len(pd.read_csv(last.parent / "history.csv")) == 3


def test_nan_loss_stops_and_keeps_last_good_checkpoint(prepared, tmp_path, monkeypatch):
    ws = clone(prepared, tmp_path)
    monkeypatch.chdir(ws)
    original, calls = Distiller.forward_train, []
    batches_per_epoch = -(-1438 // 64)

    def poisoned(self, x, y, epoch):
        logits, losses = original(self, x, y, epoch)
        calls.append(1)
        if len(calls) == batches_per_epoch + 3:  # epoch 2, batch 3
            losses["ce"] = losses["ce"] * float("nan")
        return logits, losses

    monkeypatch.setattr(Distiller, "forward_train", poisoned)
    with pytest.raises(KDError, match=r"run student: loss is nan at epoch 2, batch 3; stopped. The last good "
                                      r"checkpoint is kept \(results/tiny/runs/student/last.pt\)"):
        train("student", load_params("params.yaml"), CPU)
    assert torch.load(ws / "results/tiny/runs/student/last.pt", weights_only=True)["epoch"] == 1
    assert not (ws / "results/tiny/runs/student/model.pt").exists()


def test_model_too_deep_for_the_images_is_named(prepared, tmp_path, monkeypatch):
    ws = clone(prepared, tmp_path, lambda raw: raw["runs"]["student"].update(model="vgg16", width=0.25))
    monkeypatch.chdir(ws)
    with pytest.raises(KDError, match="runs.student: model 'vgg16' cannot take the 16x16 images of dataset 'digits'"):
        train("student", load_params("params.yaml"), CPU)


def test_killed_after_the_last_epoch_still_writes_every_output(prepared, tmp_path, monkeypatch):
    ws = clone(prepared, tmp_path)
    monkeypatch.chdir(ws)
    import kdlib.engine.trainer as trainer

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # stands in for a kill between the last epoch and the final save

    monkeypatch.setattr(trainer, "save_model", killed)
    with pytest.raises(KeyboardInterrupt):
        train("student", load_params("params.yaml"), CPU)
    monkeypatch.undo()
    monkeypatch.chdir(ws)
    (ws / "results/tiny/runs/student/history.csv").unlink()  # both tools delete outputs before a re-run
    metrics = train("student", load_params("params.yaml"), CPU)
    assert len(pd.read_csv(ws / "results/tiny/runs/student/history.csv")) == 3 and metrics["final"]["epoch"] == 3


def test_full_recipe_trains(prepared, tmp_path, monkeypatch):
    # Seed 001's recipe on the tiny profile: label smoothing, AutoAugment, colour jitter, random erasing,
    # Mixup/CutMix with KD on the mixed images, AdamW with warm-up, bf16 autocast.
    def recipe(raw):
        raw["runs"]["teacher"].update(epochs=2)  # a teacher, not a good one: the recipe is what is tested
        raw["runs"]["student_kd"].update(
            label_smoothing=0.1, amp="bf16", mix={"mixup_alpha": 0.8, "cutmix_alpha": 1.0},
            optimizer={"name": "adamw", "lr": 0.002, "weight_decay": 0.05}, schedule={"name": "cosine", "warmup_epochs": 1},
            augment={"crop_padding": 2, "hflip": False, "autoaugment": True, "color_jitter": {"brightness": 0.2},
                     "random_erasing": {"p": 0.25, "scale": [0.02, 0.2]}})
    ws = clone(prepared, tmp_path / "a", recipe)
    monkeypatch.chdir(ws)
    params = load_params("params.yaml")
    train("teacher", params, CPU)
    fuse_run("teacher", params, CPU)
    write(params, stream_name(params, "student_kd"), CPU)  # the teacher's outputs under the recipe and bf16
    metrics = train("student_kd", params, CPU)
    history = pd.read_csv(ws / "results/tiny/runs/student_kd/history.csv")
    assert history["lr"].tolist()[0] < 0.002 and len(history) == 3  # warming up in epoch 1
    assert history[["train_ce", "train_kd", "test_acc"]].notna().all().all() and metrics["final"]["test_acc"] > 0


def test_stablekd_stages_continue_from_checked_checkpoints(prepared, tmp_path, monkeypatch):
    base_teacher = lambda raw: raw["runs"]["teacher"].update(block_type="base", epochs=2)  # noqa: E731
    ws = clone(prepared, tmp_path, base_teacher)
    monkeypatch.chdir(ws)
    params = load_params("params.yaml")
    train("teacher", params, CPU)
    with pytest.raises(KDError, match=r"stage0\.pt: not found; stage 1 of run s3_stablekd continues from it: "
                                      r"rerun stage 0 \(`python stages/train.py s3_stablekd --stage 0`"):
        train("s3_stablekd", params, CPU)  # the last stage, before stage 0 ran
    stage0 = train("s3_stablekd", params, CPU, stage=0)
    assert stage0["epochs"] == 1 and (ws / "results/tiny/runs/s3_stablekd/stage0.pt").is_file()
    assert not (ws / "results/tiny/runs/s3_stablekd/model.pt").exists()
    final = train("s3_stablekd", params, CPU)
    history = pd.read_csv(ws / "results/tiny/runs/s3_stablekd/history.csv")
    assert history["stage"].tolist() == [0, 1, 1] and history["blocks"].tolist() == [4, 2, 2]
    assert history["test_acc"].iloc[0] == pytest.approx(stage0["test_acc"])  # stage 0's epoch, carried on
    assert final["epochs"] == 3 and final["params"] < 60_000  # the plain half-width cifar_quick, projectors folded

    # Stage 0 depends on the learning rate: a stage-0 checkpoint from another lr is refused, naming it.
    (ws / "params.yaml").write_text((ws / "params.yaml").read_text().replace("lr: 0.1", "lr: 0.2"))
    with pytest.raises(KDError, match=r"stage0\.pt: was trained with other params, data or teacher"):
        train("s3_stablekd", load_params("params.yaml"), CPU)
