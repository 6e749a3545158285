"""ONNX export: each model family's inference form through onnxruntime with PyTorch's logits (within 1e-4) and
top-1 at any batch size, FLOP counts against hand counts, and the export stage's refusal to keep a wrong file."""
import copy
import json
import shutil

import onnx
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import kdlib.export.export_run as export_run
from kdlib.config import load_params
from kdlib.data import prepared
from kdlib.distill.blockwise import fold_projectors, student_in_teacher_widths
from kdlib.engine.evaluate import evaluate
from kdlib.counting import count_flops
from kdlib.errors import KDError
from kdlib.export.onnx_model import export_onnx, opset, predict, session
from kdlib.export.parity import TOLERANCE, parity
from kdlib.models.build import build_model
from kdlib.reparam.fusion import to_deploy

# A small member of every family in the registry (the torchvision ones have a fixed width).
FAMILIES = [("lenet5bn", 0.5), ("cifar_quick", 0.5), ("vgg_shallow", 0.125), ("resnet20", 0.25), ("wrn_16_2", 0.5),
            ("mobilenetv2", 0.25), ("resnet18", 1.0), ("efficientnetv2_s", 1.0)]


def trained_looking(model: nn.Module) -> nn.Module:
    """Move BN statistics and affine terms off their initial values, so that no layer is an identity."""
    torch.manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


def exported(model: nn.Module, tmp_path, shape=(3, 32, 32)):
    """Export, then compare on 37 random images in batches of 16, 16 and 5, and alone."""
    path = tmp_path / "model.onnx"
    export_onnx(model, path, torch.zeros(2, *shape))
    runtime = session(path, threads=2)
    images, labels = torch.randn(37, *shape), torch.randint(0, 10, (37,))
    loader = DataLoader(TensorDataset(images, labels), batch_size=16)
    check = parity(evaluate(model, loader, torch.device("cpu"))["logits"], runtime, images, labels, 16)
    assert check["passed"] and check["num_test"] == 37 and not check["differing_top1"], check
    assert check["max_abs_logit_diff"] <= TOLERANCE == 1e-4
    with torch.no_grad():
        assert (predict(runtime, images[:1]) - model(images[:1])).abs().max() <= 1e-4  # batch 1 too
    assert opset(path) >= 17
    batch = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.HasField("dim_value")  # a symbolic, dynamic batch
    return path


def convs_in(path) -> int:
    return sum(node.op_type == "Conv" for node in onnx.load(str(path)).graph.node)


@pytest.mark.parametrize("name,width", FAMILIES, ids=[n for n, _ in FAMILIES])
def test_every_family_exports_with_parity(name, width, tmp_path):
    exported(trained_looking(build_model(name, 10, width)), tmp_path)


def without(monkeypatch, exporter: str) -> None:
    """torch.onnx.export refusing one of its two exporters (the TorchScript "tracer" or "torch.export")."""
    real = torch.onnx.export

    def export(*args, dynamo=True, **kwargs):
        if dynamo == (exporter == "torch.export"):
            raise RuntimeError(f"no {exporter} here")
        return real(*args, dynamo=dynamo, **kwargs)
    monkeypatch.setattr(torch.onnx, "export", export)


def pooled_net(pooled, side: int) -> nn.Module:
    """A conv, an adaptive average pool to `pooled` and a classifier, on side x side images."""
    rows, cols = (pooled if isinstance(pooled, tuple) else (pooled, pooled))
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(pooled), nn.Flatten(),
                         nn.Linear(4 * (rows or side) * (cols or side), 10)).eval()


@pytest.mark.parametrize("model,side", [
    (lambda: trained_looking(build_model("lenet5bn", 10, 0.5)), 16),  # the tiny profile's digits: 1x1 maps to 5x5
    (lambda: pooled_net(3, 7), 7),  # uneven windows
    (lambda: pooled_net((4, None), 6), 6)], ids=["lenet-16px", "7-to-3", "rows-only"])
def test_adaptive_pools_the_tracer_refuses_are_traced_as_pooling_matrices(model, side, tmp_path, monkeypatch):
    model = model()
    without(monkeypatch, "torch.export")
    path = exported(model, tmp_path, shape=(3, side, side))
    assert "MatMul" in {node.op_type for node in onnx.load(str(path)).graph.node}
    assert any(isinstance(m, nn.AdaptiveAvgPool2d) for m in model.modules())  # the caller's model is untouched


def test_what_the_tracer_cannot_take_goes_through_torch_export(tmp_path, capfd, monkeypatch):
    without(monkeypatch, "tracer")  # a torch without it
    exported(trained_looking(build_model("lenet5bn", 10, 0.5)), tmp_path, shape=(3, 16, 16))
    assert "Torch IR graph" not in capfd.readouterr().out  # the tracer's dump on giving up stays out of the log


def test_a_fused_acb_model_exports_as_the_plain_network(tmp_path):
    model = to_deploy(trained_looking(build_model("cifar_quick", 10, 0.5, "acb")))
    path = exported(model, tmp_path)
    plain = build_model("cifar_quick", 10, 0.5)
    assert convs_in(path) == sum(isinstance(m, nn.Conv2d) for m in plain.modules())  # one conv per fused block


def test_a_stablekd_student_exports_without_its_projectors(tmp_path):
    teacher, student = build_model("resnet20", 10, 1.0).eval(), build_model("resnet20", 10, 0.5)
    trained = trained_looking(student_in_teacher_widths(student, teacher, (3, 32, 32)))
    path = exported(fold_projectors(trained).eval(), tmp_path)
    plain = build_model("resnet20", 10, 0.5)
    assert convs_in(path) == sum(isinstance(m, nn.Conv2d) for m in plain.modules())


def test_parity_catches_other_logits(tmp_path):
    model = trained_looking(build_model("lenet5bn", 10, 0.5))
    path = tmp_path / "model.onnx"
    export_onnx(model, path, torch.zeros(2, 3, 32, 32))
    drifted = copy.deepcopy(model)
    last = [m for m in drifted.modules() if isinstance(m, nn.Linear)][-1]
    last.bias.data[3] += 1e-3  # 10x the tolerance, too little to change many classes
    images, labels = torch.randn(20, 3, 32, 32), torch.zeros(20, dtype=torch.long)
    loader = DataLoader(TensorDataset(images, labels), batch_size=8)
    check = parity(evaluate(drifted, loader, torch.device("cpu"))["logits"], session(path, 2), images, labels, 8)
    assert not check["passed"] and check["max_abs_logit_diff"] == pytest.approx(1e-3, rel=1e-2)


@pytest.mark.parametrize("conv,shape,hand", [
    (nn.Conv2d(3, 8, 3, padding=1), (3, 32, 32), 2 * (3 * 3 * 3) * 8 * 32 * 32),  # 2 x MACs: k*k*Cin per output
    (nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), (16, 16, 16), 2 * (16 * 3 * 3) * 32 * 8 * 8),
    (nn.Conv2d(8, 8, 3, padding=1, groups=8), (8, 8, 8), 2 * (1 * 3 * 3) * 8 * 8 * 8),  # depthwise: Cin/groups
    (nn.Conv2d(4, 6, (1, 3), padding=(0, 1)), (4, 5, 5), 2 * (4 * 1 * 3) * 6 * 5 * 5),  # an ACB branch's shape
], ids=["3x3", "strided", "depthwise", "1x3"])
def test_flop_count_of_a_conv_matches_the_hand_count(conv, shape, hand):
    assert count_flops(conv, shape) == hand


def test_the_export_stage_keeps_no_file_that_computes_otherwise(finished, tmp_path, monkeypatch):
    for part in ("params.yaml", "data/tiny/digits", "results/tiny/runs/student"):  # a scratch copy: `finished` stays as it is
        (shutil.copytree if (finished / part).is_dir() else shutil.copy)(finished / part, tmp_path / part)
    monkeypatch.chdir(tmp_path)
    original = export_run.export_onnx

    def broken(model, path, example, metadata=None):  # an exporter bug: one logit shifted
        wrong = copy.deepcopy(model)
        [m for m in wrong.modules() if isinstance(m, nn.Linear)][-1].bias.data[0] += 0.01
        original(wrong, path, example, metadata)

    monkeypatch.setattr(export_run, "export_onnx", broken)
    folder = tmp_path / "results/tiny/runs/student"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}  # the last good export stays, nothing new is added
    with pytest.raises(KDError, match=r"results/tiny/runs/student/model.pt: the ONNX export computes other logits than "
                                      r"PyTorch \(max \|difference\| 0.01, tolerance 0.0001;.* model.onnx was not written"):
        export_run.export_run("student", load_params("params.yaml"))
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before and "model.onnx" in before


def markdown_tables(path) -> list[dict[str, dict[str, str]]]:
    """Every table of a Markdown file: first cell -> {header: cell}."""
    blocks = [[line for line in block.splitlines() if line.startswith("|")] for block in path.read_text().split("\n\n")]
    tables = []
    for lines in filter(None, blocks):
        header = [c.strip() for c in lines[0].strip("|").split("|")]
        tables.append({cells[0]: dict(zip(header, cells))
                       for cells in ([c.strip() for c in line.strip("|").split("|")] for line in lines[2:])})
    return tables


def test_every_run_is_exported_and_onnxruntime_scores_what_evaluate_scored(finished):
    params = load_params(finished / "params.yaml")
    files = prepared.load_prepared(finished / "data/tiny/digits")
    for name, run in params.runs.items():
        folder = finished / "results/tiny/runs" / name
        report = json.loads((folder / "export.json").read_text())
        runtime = session(folder / "model.onnx", threads=2)
        correct = (predict(runtime, files.test.images).argmax(1) == files.test.labels).sum().item()  # uint8 in
        evaluation = json.loads((folder / "eval.json").read_text())
        assert 100.0 * correct / 359 == evaluation["test_acc"] == report["parity"]["onnx_test_acc"]
        assert report["parity"]["num_test"] == 359 and report["parity"]["differing_top1"] == []
        assert report["parity"]["max_abs_logit_diff"] <= 1e-4
        assert report["onnx"]["opset"] == opset(folder / "model.onnx") >= 17
        assert report["onnx"]["bytes"] == (folder / "model.onnx").stat().st_size
        deployed, acb = report["forms"]["deployed"], run.block_type == "acb"
        inference = json.loads((folder / "fuse.json").read_text())["params"]["fused"] if acb else \
            json.loads((folder / "metrics.json").read_text())["params"]
        assert deployed["params"] == inference
        assert deployed["checkpoint_bytes"] == (folder / ("deploy.pt" if acb else "model.pt")).stat().st_size
        assert ("unfused" in report["forms"]) == acb
        assert report["threads"] == 1  # a local run without a GPU gives every job one core
        for form in report["forms"].values():
            assert set(form["latency_ms"]) == {"batch_1", "batch_64"}
            assert all(ms > 0 for batch in form["latency_ms"].values() for ms in batch.values())


def test_the_efficiency_table_holds_the_exports(finished):
    text = (finished / "results/tiny/tables/efficiency.md").read_text()
    assert "CPU, 1 thread for PyTorch" in text and "(0.05 s per batch size)" in text and "ONNX opset 18" in text
    deployed, fusion, dense = markdown_tables(finished / "results/tiny/tables/efficiency.md")
    params = load_params(finished / "params.yaml")
    assert list(deployed) == list(params.written)
    for name, row in deployed.items():
        first = next(iter(params.replicas[name].values()))
        report = json.loads((finished / "results/tiny/runs" / first / "export.json").read_text())
        form = report["forms"]["deployed"]
        # student_kd teaches gen3
        assert row["role"] == ("teacher" if name in ("teacher", "student_kd", "vit_teacher") else "student")
        assert row["params (M)"] == f"{form['params'] / 1e6:.3f}" and row["MFLOPs"] == f"{form['flops'] / 1e6:.1f}"
        assert row["ONNX (kB)"] == f"{report['onnx']['bytes'] / 1e3:.0f}"
        assert row["max abs Δ logit"] == f"{report['parity']['max_abs_logit_diff']:.1e}"
        ms = form["latency_ms"]["batch_64"]
        assert row["eager b64 (ms)"] == f"{ms['eager']:.2f}"
        assert row["eager/ort b64"] == f"{ms['eager'] / ms['onnxruntime']:.2f}"
    assert set(fusion) == {"teacher", "student_acb"}
    for name, row in fusion.items():
        forms = json.loads((finished / "results/tiny/runs" / name / "export.json").read_text())["forms"]
        assert row["params (M)"] == f"{forms['unfused']['params'] / 1e6:.3f} → {forms['deployed']['params'] / 1e6:.3f}"
        assert forms["unfused"]["params"] > forms["deployed"]["params"]
        assert forms["unfused"]["flops"] > forms["deployed"]["flops"]
    assert list(dense) == [f"{n} ({r})" for n in ("sr_tiny", "edges_tiny") for r in ("scratch", "kd")]
    for label, row in dense.items():
        name, role = label.rstrip(")").split(" (")
        folder = finished / "results/tiny/dense" / name / role
        report, metrics = (json.loads((folder / f).read_text()) for f in ("export.json", "metrics.json"))
        assert row["params (M)"] == f"{metrics['params'] / 1e6:.3f}" and report["params"] == metrics["params"]
        assert row["ONNX (kB)"] == f"{(folder / 'model.onnx').stat().st_size / 1e3:.0f}"
        parity = report["parity"]
        if name == "sr_tiny":  # PyTorch's PSNR as the export stage measured it, and as training did
            assert row["PyTorch / ONNX (held-out)"] == \
                f"PSNR-Y {parity['psnr_y_pytorch']:.3f} / {parity['psnr_y_onnx']:.3f} dB"
            assert abs(parity["psnr_y_pytorch"] - metrics["final"]["psnr_y"]) <= 1e-3
        else:
            assert row["PyTorch / ONNX (held-out)"] == f"Dice {parity['dice_pytorch']:.4f} / {parity['dice_onnx']:.4f}"
            assert abs(parity["dice_pytorch"] - metrics["final"]["dice"]) <= 1e-3
