"""Checkpoints load with weights_only=True; every bad one stops with a message naming the file."""
import subprocess
import sys

import pytest
import torch

from kdlib.config import Run
from kdlib.engine.checkpoint import load_model, save_model
from kdlib.errors import KDError
from kdlib.models.build import build_model
from tests.conftest import make_workspace


@pytest.fixture
def ckpt(tmp_path):
    path = tmp_path / "model.pt"
    run = Run(model="resnet20", dataset="d", epochs=1, width=0.5)
    save_model(path, "r", run, build_model("resnet20", 10, 0.5), 10)
    return path


def test_round_trip_restores_weights(ckpt):
    model, blob = load_model(ckpt, "resnet20", 10)
    reference = torch.load(ckpt, weights_only=True)["state_dict"]
    assert all(torch.equal(v, reference[k]) for k, v in model.state_dict().items())
    assert blob["run"] == "r" and blob["config"]["width"] == 0.5


def test_truncated(ckpt):
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    with pytest.raises(KDError, match=f"{ckpt}: checkpoint cannot be read, it is truncated or corrupt"):
        load_model(ckpt)


def test_corrupt(ckpt):
    data = bytearray(ckpt.read_bytes())
    data[:64] = b"\x00" * 64
    ckpt.write_bytes(bytes(data))
    with pytest.raises(KDError, match=f"{ckpt}: checkpoint cannot be read"):
        load_model(ckpt)


def test_code_in_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "kdlib-model-1", "payload": subprocess.Popen}, path)
    with pytest.raises(KDError, match=f"{path}: checkpoint cannot be read"):
        load_model(path)


def test_other_architecture(ckpt):
    with pytest.raises(KDError, match=f"{ckpt}: holds a 'resnet20' model, but 'vgg16' is expected"):
        load_model(ckpt, "vgg16", 10)


def test_other_class_count(ckpt):
    with pytest.raises(KDError, match=f"{ckpt}: was trained for 10 classes, but the dataset has 100"):
        load_model(ckpt, "resnet20", 100)


def test_weights_that_do_not_fit(ckpt):
    blob = torch.load(ckpt, weights_only=True)
    blob["width"] = 1.0  # claims full width, holds half-width weights
    torch.save(blob, ckpt)
    with pytest.raises(KDError, match=f"{ckpt}: weights do not fit a 'resnet20' \\(width 1.0, block_type base\\)"):
        load_model(ckpt)


def test_missing(tmp_path):
    with pytest.raises(KDError, match="model.pt: checkpoint not found"):
        load_model(tmp_path / "model.pt")


def test_export_stage_reports_corrupt_checkpoint(tmp_path):
    ws = make_workspace(tmp_path)
    env = {"PYTHONPATH": str(ws), "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "stages/prepare.py", "digits"], cwd=ws, env=env, check=True, capture_output=True)
    target = ws / "results/tiny/runs/student/model.pt"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not a checkpoint")
    out = subprocess.run([sys.executable, "stages/export.py", "student"], cwd=ws, env=env, capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.startswith("error: results/tiny/runs/student/model.pt: checkpoint cannot be read")
    assert target.read_bytes() == b"not a checkpoint"  # nothing overwritten
    assert not any((ws / "results/tiny/runs/student" / f).exists() for f in ("eval.json", "model.onnx", "export.json"))


def test_incomplete_checkpoint(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"format": "kdlib-model-1", "model": "resnet20"}, path)
    with pytest.raises(KDError, match=f"{path}: incomplete kdlib checkpoint \\(missing or malformed: width, num_classes, state_dict\\)"):
        load_model(path)


def test_unknown_model_in_checkpoint_names_the_file(ckpt):
    blob = torch.load(ckpt, weights_only=True)
    blob["model"] = "resnet21"
    torch.save(blob, ckpt)
    with pytest.raises(KDError, match=f"{ckpt}: unknown model 'resnet21'"):
        load_model(ckpt)
