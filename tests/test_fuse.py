"""The fuse stage: a deploy checkpoint that predicts what the trained ACB model predicts, or nothing at all."""
import json

import pytest
import torch

import kdlib.reparam.deploy as deploy
from kdlib.config import load_params
from kdlib.engine.checkpoint import load_model
from kdlib.engine.trainer import train
from kdlib.errors import KDError
from tests.test_training import CPU, clone, prepared  # noqa: F401  (the module fixture)


@pytest.fixture(scope="module")
def trained_acb(prepared, tmp_path_factory):  # noqa: F811
    """A workspace on the tiny profile; the first test to need it trains its student_acb run."""
    return clone(prepared, tmp_path_factory.mktemp("fuse"))


def fuse_in(ws, monkeypatch, name="student_acb"):
    monkeypatch.chdir(ws)
    params = load_params("params.yaml")
    if not (ws / "results/tiny/runs" / name / "model.pt").exists():
        train(name, params, CPU)
    return params


def test_fuse_writes_an_equivalent_deploy_checkpoint(trained_acb, monkeypatch):
    params = fuse_in(trained_acb, monkeypatch)
    report = deploy.fuse_run("student_acb", params, CPU)
    folder = trained_acb / "results/tiny/runs/student_acb"
    assert json.loads((folder / "fuse.json").read_text()) == report
    metrics = json.loads((folder / "metrics.json").read_text())
    assert report["identical_predictions"] and report["num_test"] == 359
    final = metrics["final"]["test_acc"]
    assert report["fused_test_acc"] == report["unfused_test_acc"]
    assert report["fused_test_acc"] == final  # the same test images right as training ended with
    assert report["max_abs_logit_diff"] <= 1e-5 * report["logit_scale"]
    assert report["params"]["fused"] < report["params"]["unfused"]
    assert report["flops"]["fused"] < report["flops"]["unfused"]
    assert all(report["latency_ms_per_batch"][k] > 0 for k in ("unfused", "fused", "plain"))
    fused, blob = load_model(folder / "deploy.pt", "lenet5bn", 10)
    assert blob["block_type"] == "base" and blob["deployed"] is True
    unfused, _ = load_model(folder / "model.pt", "lenet5bn", 10)
    x = torch.randn(16, 3, 16, 16)
    with torch.no_grad():
        a, b = unfused.eval()(x), fused.eval()(x)
    assert ((a - b).abs().max() / a.abs().max()).item() <= 1e-5


def test_fuse_refuses_a_model_whose_predictions_change(trained_acb, monkeypatch):
    params = fuse_in(trained_acb, monkeypatch)
    folder = trained_acb / "results/tiny/runs/student_acb"
    (folder / "deploy.pt").unlink(missing_ok=True)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    original = deploy.to_deploy

    def broken(model):  # a fusion bug: the first conv's bias is lost
        fused = original(model)
        next(m for m in fused.modules() if isinstance(m, torch.nn.Conv2d)).bias.data.mul_(-5)
        return fused

    monkeypatch.setattr(deploy, "to_deploy", broken)
    with pytest.raises(KDError, match=r"the fused model predicts another class than the unfused one on \d+ of 359 "
                                      r"test images .*deploy.pt was not written"):
        deploy.fuse_run("student_acb", params, CPU)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # nothing written, nothing removed


def test_fuse_refuses_a_base_run(trained_acb, monkeypatch):
    params = fuse_in(trained_acb, monkeypatch)
    with pytest.raises(KDError, match="runs.student: block_type is 'base'; only ACB runs are fused"):
        deploy.fuse_run("student", params, CPU)
