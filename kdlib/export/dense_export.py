"""A dense student (seed 002, Task 2) exported to model.onnx beside its model.pt: 8-bit images of any size in, the
task's own output out (an SR image in [0, 1], an edge probability map), proven by the task's own metric to compute
what PyTorch computes on every held-out image (PSNR, or Dice), and timed: export.json."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import onnxruntime
import torch

from kdlib.atomic import atomic_write_text
from kdlib.config import Params
from kdlib.counting import count_flops, count_parameters
from kdlib.dense import data as dense_data
from kdlib.dense.edge_metrics import dice
from kdlib.dense.image_metrics import sr_scores
from kdlib.dense.train import IMAGENET_MEAN, IMAGENET_STD, load_net, model_path
from kdlib.engine.latency import alternating_median_ms
from kdlib.errors import KDError
from kdlib.export.onnx_model import INPUT, Deployable, export_onnx, opset, predict, session

# Largest differences allowed between onnxruntime and PyTorch: outputs are float32 maps in [0, 1] (kernels may
# sum in another order, nothing more); the metrics as the report gives them.
MAX_PIXEL_DIFF, MAX_PSNR_DIFF_DB, MAX_DICE_DIFF = 1e-4, 0.01, 1e-3


def export_dense(params: Params, name: str, role: str) -> dict:
    """model.onnx and export.json for one dense student, or neither: the stage fails on a parity miss."""
    exp = params.dense[name]
    folder = params.layout.dense_run_dir(name, role)
    _, test, meta = dense_data.load(params.layout.dense_data_dir(name))
    net = load_net(params, name, role, torch.device("cpu"))
    sr = exp.task == "super_resolution"
    model = (Deployable(net, (0.0,) * 3, (1.0,) * 3, lambda out: out.clamp(0, 1)) if sr else
             Deployable(net, IMAGENET_MEAN, IMAGENET_STD, torch.sigmoid)).eval()
    inputs = [image[None] for image in test["lr"]] if sr else list(test["images"].split(exp.training.batch_size))
    output = "image" if sr else "edges"
    metrics = json.loads((folder / "metrics.json").read_text())
    metadata = {"task": exp.task, "experiment": name, "role": role, "profile": params.profile,
                "model": exp.net(role).model if sr else f"unet/{exp.net(role).encoder}",
                "input": f"{INPUT}: uint8 N x 3 x H x W, RGB 0-255, any height and width"
                         + ("" if sr else " (multiples of 32)"),
                "preprocessing": "inside the graph: x / 255" + ("" if sr else ", then ImageNet's mean and std"),
                "output": (f"{output}: float32 N x 3 x {exp.data.scale}H x {exp.data.scale}W, RGB in [0, 1] "
                           "(x 255 and round for 8 bits)") if sr else
                          (f"{output}: float32 N x 1 x H x W, each pixel's boundary probability; edges where it "
                           f"exceeds the threshold"),
                **({"scale": exp.data.scale} if sr else {"threshold": metrics["final"]["ods_threshold"]})}
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory(dir=folder, prefix=".export-", suffix=".tmp") as scratch:
        path = Path(scratch) / "model.onnx"
        export_onnx(model, path, inputs[0][:1].repeat(2, 1, 1, 1), metadata, output, dynamic_size=True)
        exported = session(path, threads)
        with torch.no_grad():
            eager = [model(x) for x in inputs]
        ort = [predict(exported, x) for x in inputs]
        check = (_sr_parity(eager, ort, test["hr"], exp.data.scale) if sr else
                 _edge_parity(torch.cat(eager), torch.cat(ort), test["edges"][:, None]))
        if not check.pop("passed"):
            raise KDError(f"{model_path(params, name, role)}: the ONNX export computes other outputs than PyTorch "
                          f"({json.dumps(check)}); model.onnx was not written")
        one = inputs[0][:1]
        ms = alternating_median_ms([lambda: model(one), lambda: predict(exported, one)], params.export.latency_seconds)
        report = {"experiment": name, "role": role, "task": exp.task, "model": metadata["model"],
                  "onnx": {"file": "model.onnx", "bytes": path.stat().st_size, "opset": opset(path), "input": INPUT,
                           "output": output, "dynamic": ["batch", "height", "width"], "metadata": metadata},
                  "parity": check, "params": count_parameters(net), "flops": count_flops(net, tuple(one.shape[1:])),
                  "checkpoint_bytes": model_path(params, name, role).stat().st_size, "image_shape": list(one.shape[1:]),
                  "threads": threads, "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
                  "latency_seconds": params.export.latency_seconds,
                  "latency_ms": {"batch_1": {"eager": ms[0], "onnxruntime": ms[1]}}}
        path.replace(folder / "model.onnx")
    atomic_write_text(folder / "export.json", json.dumps(report, indent=2))
    return report


def _sr_parity(eager: list[torch.Tensor], ort: list[torch.Tensor], hr: list[torch.Tensor], scale: int) -> dict:
    """PSNR (Y, as the report gives it) of both runtimes' outputs against the HR images, and the largest pixel
    difference between them."""
    target = [image[None].float() / 255 for image in hr]
    psnr = [sum(sr_scores(o, t, scale)["psnr_y"] for o, t in zip(outs, target)) / len(target) for outs in (eager, ort)]
    diff = max((e - o).abs().max().item() for e, o in zip(eager, ort))
    return {"num_test": len(target), "psnr_y_pytorch": psnr[0], "psnr_y_onnx": psnr[1],
            "max_abs_pixel_diff": diff, "tolerance": {"pixel": MAX_PIXEL_DIFF, "psnr_db": MAX_PSNR_DIFF_DB},
            "passed": diff <= MAX_PIXEL_DIFF and abs(psnr[0] - psnr[1]) <= MAX_PSNR_DIFF_DB}


def _edge_parity(eager: torch.Tensor, ort: torch.Tensor, edges: torch.Tensor) -> dict:
    """Dice of both runtimes' maps against the boundaries, and the largest probability difference between them."""
    scores = dice(eager, edges), dice(ort, edges)
    diff = (eager - ort).abs().max().item()
    return {"num_test": len(edges), "dice_pytorch": scores[0], "dice_onnx": scores[1], "max_abs_prob_diff": diff,
            "tolerance": {"prob": MAX_PIXEL_DIFF, "dice": MAX_DICE_DIFF},
            "passed": diff <= MAX_PIXEL_DIFF and abs(scores[0] - scores[1]) <= MAX_DICE_DIFF}
