"""Seed 002's dense tasks in the pipeline: their params checks, their DAG nodes, and their trainer."""
import json
import os

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from kdlib.config import validate
from kdlib.dense.data import prepare
from kdlib.dense.train import SuperResolution, train
from kdlib.errors import KDError
from kdlib.pipeline import stages
from tests.conftest import TINY
from tests.test_config import error_of

BAD = [
    (lambda d: d["sr_tiny"]["data"].update(patch_size=30),
     "dense.sr_tiny.data: patch_size (30) must be a multiple of scale (4)"),
    (lambda d: d["sr_tiny"]["data"].update(source="folder"),
     "dense.sr_tiny.data: source 'folder' needs 'train_path' and 'eval_path'"),
    (lambda d: d["sr_tiny"]["teacher"].update(epoch=2), "dense.sr_tiny.teacher.epoch: unknown key (did you mean 'epochs'?)"),
    (lambda d: d["sr_tiny"]["training"].update(lr=0), "dense.sr_tiny.training.lr: Input should be greater than 0"),
    (lambda d: d["sr_tiny"].update(task="deblur"),
     "dense.sr_tiny: Input tag 'deblur' found using 'task' does not match any of the expected tags: 'super_resolution', "
     "'edges'"),
    (lambda d: d["edges_tiny"]["data"].update(source="bsds500"),
     "dense.edges_tiny.data: source 'bsds500' needs 'path'"),
    (lambda d: d["edges_tiny"]["distill"].update(alpha=2),
     "dense.edges_tiny.distill.alpha: Input should be less than or equal to 1"),
    (lambda d: d["edges_tiny"]["student"].update(decoder_channels=[8] * 6),
     "dense.edges_tiny.student.decoder_channels: List should have at most 5 items"),
    (lambda d: d.update({"sr-2": d["sr_tiny"]}), "dense.sr-2: names must start with a letter"),
]


@pytest.mark.parametrize("mutate,message", BAD, ids=[m for _, m in BAD])
def test_bad_dense_config_names_the_key(tiny_raw, mutate, message):
    mutate(tiny_raw["dense"])
    assert message in error_of(tiny_raw)


def test_a_run_may_not_take_a_dense_stage_name(tiny_raw):
    tiny_raw["runs"]["dense_sr_tiny_kd"] = {"model": "lenet5bn"}
    assert "runs.dense_sr_tiny_kd: the name is taken by dense experiment 'sr_tiny'" in error_of(tiny_raw)


@pytest.mark.parametrize("key,value,message", [
    ("model", "swinir2", "dense.sr_tiny.teacher.model: unknown super-resolution model 'swinir2' (known: swinir, edsr, "
                         "attention_srnet)"),
    ("args", {"embed": 8}, "dense.sr_tiny.teacher.args.embed: 'swinir' takes no argument 'embed' (it takes: embed_dim,"),
])
def test_dag_refuses_unknown_networks(tmp_path, tiny_raw, key, value, message):
    import yaml
    tiny_raw["dense"]["sr_tiny"]["teacher"][key] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(tiny_raw))
    with pytest.raises(KDError, match=message.replace("(", r"\(").replace(")", r"\)")):
        stages(str(path))


def test_unknown_photo_is_named(tmp_path, tiny_raw):
    import yaml
    tiny_raw["dense"]["sr_tiny"]["data"]["eval_images"] = ["motorcycle"]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(tiny_raw))
    with pytest.raises(KDError, match="dense.sr_tiny.data.eval_images: unknown photo 'motorcycle'"):
        stages(str(path))


def test_each_role_is_a_node_that_depends_on_its_own_settings():
    by_name = {s.name: s for s in stages(str(TINY))}
    settings = lambda stage: set(json.loads(by_name[stage].values)) - {"tables"}  # noqa: E731
    assert settings("prepare_dense_edges_tiny") == {"task", "data"}
    assert settings("train_dense_edges_tiny_teacher") == {"task", "data", "training", "teacher"}
    assert settings("train_dense_edges_tiny_scratch") == {"task", "data", "training", "student"}
    assert settings("train_dense_edges_tiny_kd") == {"task", "data", "training", "teacher", "student", "distill"}
    kd = by_name["train_dense_edges_tiny_kd"]
    assert "results/tiny/dense/edges_tiny/teacher/model.pt" in kd.deps and kd.gpu
    assert "results/tiny/dense/edges_tiny/teacher/model.pt" not in by_name["train_dense_edges_tiny_scratch"].deps
    assert "data/tiny/dense/edges_tiny/train.pt" in kd.deps and "kdlib/dense/losses.py" in kd.deps
    assert "results/tiny/tables/seed002_edges_tiny.md" in by_name["tables"].reports
    assert "results/tiny/dense/edges_tiny/kd/predictions.pt" in by_name["tables"].deps


@pytest.fixture
def workspace(tmp_path, tiny_raw):
    """The tiny SR experiment's data prepared in a scratch working directory."""
    cwd = os.getcwd()
    os.chdir(tmp_path)
    params = validate(tiny_raw)
    prepare("sr_tiny", params.dense["sr_tiny"], params.layout.dense_data_dir("sr_tiny"))
    yield params
    os.chdir(cwd)


def test_resuming_from_last_checkpoint_gives_the_uninterrupted_result(workspace, monkeypatch):
    params = workspace
    straight = train(params, "sr_tiny", "teacher", torch.device("cpu"))
    history = pd.read_csv(params.layout.dense_run_dir("sr_tiny", "teacher") / "history.csv")
    # Kill the run in its second epoch's evaluation: the first epoch's last.pt stays behind.
    evaluate, calls = SuperResolution.evaluate, []

    def dies_in_epoch_two(self, test):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return evaluate(self, test)

    monkeypatch.setattr(SuperResolution, "evaluate", dies_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        train(params, "sr_tiny", "teacher", torch.device("cpu"))
    last = params.layout.dense_run_dir("sr_tiny", "teacher") / "last.pt"
    assert len(torch.load(last, weights_only=True)["history"]) == 1
    monkeypatch.setattr(SuperResolution, "evaluate", evaluate)
    resumed = train(params, "sr_tiny", "teacher", torch.device("cpu"))
    assert resumed["final"] == straight["final"] and not last.exists()
    assert pd.read_csv(params.layout.dense_run_dir("sr_tiny", "teacher") / "history.csv").drop(columns="train_s").equals(
        history.drop(columns="train_s"))


def test_distilled_sr_student_sums_weighted_kd_terms(workspace):
    params = workspace
    train(params, "sr_tiny", "teacher", torch.device("cpu"))
    from kdlib.dense.nets import build_net
    from kdlib.dense.train import load_net
    exp = params.dense["sr_tiny"]
    teacher = load_net(params, "sr_tiny", "teacher", torch.device("cpu"))
    torch.manual_seed(0)
    student = build_net("sr_tiny", exp, "kd")
    task = SuperResolution(exp, student, teacher, torch.device("cpu"))
    lr, hr = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 32, 32)
    losses = task.losses(lr, hr)
    sr, features = student.forward_features(lr)
    target, target_features = teacher.forward_features(lr)
    assert losses["l1"].item() == pytest.approx(F.l1_loss(sr, hr).item(), rel=1e-6)
    assert losses["feature"].item() == pytest.approx(
        exp.distill.feature_weight * F.mse_loss(task.projector(features), target_features).item(), rel=1e-5)
    assert losses["perceptual"].item() == pytest.approx(
        exp.distill.perceptual_weight * task.perceptual(sr, target).item(), rel=1e-5)
    assert "random init" in task.perceptual.source or "ImageNet" in task.perceptual.source


def test_student_with_a_stale_teacher_stops_before_training(workspace):
    params = workspace
    train(params, "sr_tiny", "teacher", torch.device("cpu"))
    exp = params.dense["sr_tiny"]
    changed = params.model_copy(update={"dense": {"sr_tiny": exp.model_copy(update={
        "teacher": exp.teacher.model_copy(update={"epochs": 5})})}})
    with pytest.raises(KDError, match="teacher/model.pt: was trained with other params than dense.sr_tiny has now"):
        train(changed, "sr_tiny", "kd", torch.device("cpu"))
    assert not (params.layout.dense_run_dir("sr_tiny", "kd") / "last.pt").exists()


def test_sr_folder_source_reads_every_image_in_the_folders(tmp_path, tiny_raw):
    import numpy as np
    from PIL import Image
    from kdlib.dense.data import load
    arrays = {}
    for split, count in (("train", 2), ("eval", 1)):
        (tmp_path / split).mkdir()
        for i in range(count):
            arrays[split, i] = np.random.default_rng(i).integers(0, 256, (50, 70, 3), dtype=np.uint8)
            Image.fromarray(arrays[split, i]).save(tmp_path / split / f"img{i}.png")
    (tmp_path / "train" / "notes.txt").write_text("not an image")
    data = tiny_raw["dense"]["sr_tiny"]["data"]
    for key in ("train_images", "eval_images"):
        del data[key]
    data.update(source="folder", train_path=str(tmp_path / "train"), eval_path=str(tmp_path / "eval"), eval_size=None)
    params = validate(tiny_raw)
    prepare("sr_tiny", params.dense["sr_tiny"], tmp_path / "out")
    train_set, test_set, meta = load(tmp_path / "out")
    assert meta["train_images"] == ["img0.png", "img1.png"] and test_set["names"] == ["img0.png"]
    # The whole held-out image, trimmed to a multiple of the scale around its centre: 50x70 -> 48x68.
    assert torch.equal(test_set["hr"][0], torch.from_numpy(arrays["eval", 0][1:49, 1:69]).permute(2, 0, 1))
    assert test_set["lr"][0].shape == (3, 12, 17)
    assert train_set["hr"].shape == (16, 3, 32, 32) and train_set["lr"].shape == (16, 3, 8, 8)

    data["train_path"] = str(tmp_path / "missing")
    with pytest.raises(KDError, match="dense.sr_tiny.data.train_path: .*missing is not a folder of images"):
        prepare("sr_tiny", validate(tiny_raw).dense["sr_tiny"], tmp_path / "out")
