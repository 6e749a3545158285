"""The deployment table: every run's inference form as exported to ONNX, what it costs in parameters, FLOPs, bytes
and latency in PyTorch eager and onnxruntime, and for ACB runs what fusing the branches saved (export.json); then
the dense students' exports, with their parity by the task's own metric."""
from __future__ import annotations

import json
from pathlib import Path

from tabulate import tabulate

from kdlib.config import DENSE_STUDENTS, Params
from kdlib.report.results import Results, write_table


def write(params: Params, res: Results, outputs: dict[str, Path]) -> list[str]:
    table = efficiency_table(params, res)
    write_table(outputs["table"], table)
    return ["## Deployment: ONNX export and efficiency", "",
            "Every run's inference form is exported to ONNX (`results/<profile>/runs/<run>/model.onnx`) and checked against "
            "PyTorch on the whole test split.", "", table, ""]


def _dense_table(params: Params) -> str:
    """Each dense student's export: size, cost, parity by its task's metric, latency for one held-out image."""
    rows = []
    for name in params.dense:
        for role in DENSE_STUDENTS:
            e = json.loads((params.layout.dense_run_dir(name, role) / "export.json").read_text())
            p = e["parity"]
            metric = (f"PSNR-Y {p['psnr_y_pytorch']:.3f} / {p['psnr_y_onnx']:.3f} dB" if "psnr_y_onnx" in p else
                      f"Dice {p['dice_pytorch']:.4f} / {p['dice_onnx']:.4f}")
            diff = p.get("max_abs_pixel_diff", p.get("max_abs_prob_diff"))
            ms = e["latency_ms"]["batch_1"]
            rows.append([f"{name} ({role})", e["model"], "x".join(map(str, e["image_shape"])),
                         f"{e['params'] / 1e6:.3f}", f"{e['flops'] / 1e6:.1f}", f"{e['checkpoint_bytes'] / 1e3:.0f}",
                         f"{e['onnx']['bytes'] / 1e3:.0f}", metric, f"{diff:.1e}",
                         f"{ms['eager']:.2f}", f"{ms['onnxruntime']:.2f}", f"{ms['eager'] / ms['onnxruntime']:.2f}"])
    return tabulate(rows, headers=["dense student", "model", "input", "params (M)", "MFLOPs", "checkpoint (kB)",
                                   "ONNX (kB)", "PyTorch / ONNX (held-out)", "max abs Δ output", "eager b1 (ms)",
                                   "onnxruntime b1 (ms)", "eager/ort b1"], tablefmt="github", disable_numparse=True)


def efficiency_table(params: Params, res: Results) -> str:
    """Both tables, under the conditions every latency was measured in (first seed of each written run)."""
    first = res.first(next(iter(params.written)))["export"]
    batches = [k.split("_")[1] for k in first["forms"]["deployed"]["latency_ms"]]
    conditions = (f"CPU, {first['threads']} thread{'s' if first['threads'] > 1 else ''} for PyTorch {first['torch']} (eager) and onnxruntime "
                  f"{first['onnxruntime']} (intra-op), batches of {'x'.join(map(str, first['image_shape']))} uint8 images (normalised inside the graph); "
                  f"ms per batch, the median over alternating blocks of 5 calls ({first['latency_seconds']:g} s per batch "
                  f"size), a warm-up call before each block not timed. ONNX opset {first['onnx']['opset']}, dynamic "
                  f"batch; max abs Δ logit: the largest difference from PyTorch over the test split (the stage fails above "
                  f"{first['parity']['tolerance']:g} or on any changed top-1). Checkpoint: the inference checkpoint "
                  "(an ACB run's fused deploy.pt).")
    parts = [conditions, "", _deployed_table(params, res, batches)]
    acb = [name for name, run in params.written.items() if run.block_type == "acb"]
    if acb:
        parts += ["", "ACB runs, as trained (unfused branches) and as deployed (fused):", "",
                  _fusion_table(res, acb, batches)]
    if params.dense:
        parts += ["", "Dense students (seed 002, Task 2), exported with dynamic height and width (8-bit RGB in; an SR "
                  "image in [0, 1] or an edge probability map out), each checked on every held-out image by its task's "
                  "metric (the stage fails beyond 0.01 dB PSNR, 0.001 Dice or 1e-4 per pixel); latency of one "
                  "held-out input, in the same conditions:", "", _dense_table(params)]
    return "\n".join(parts)


def _deployed_table(params: Params, res: Results, batches: list[str]) -> str:
    teachers = {run.teacher for run in params.written.values()}
    rows = []
    for name, run in params.written.items():
        e = res.first(name)["export"]
        form = e["forms"]["deployed"]
        rows.append([name, "teacher" if name in teachers else "student", f"{run.model} ({run.width:g})",
                     f"{form['params'] / 1e6:.3f}", f"{form['flops'] / 1e6:.1f}", f"{form['checkpoint_bytes'] / 1e3:.0f}",
                     f"{e['onnx']['bytes'] / 1e3:.0f}", f"{e['parity']['max_abs_logit_diff']:.1e}",
                     *(f"{v:.2f}" for b in batches for v in _speeds(form["latency_ms"][f"batch_{b}"]))])
    return tabulate(rows, headers=["run", "role", "model (width)", "params (M)", "MFLOPs", "checkpoint (kB)",
                                   "ONNX (kB)", "max abs Δ logit",
                                   *(h for b in batches for h in (f"eager b{b} (ms)", f"onnxruntime b{b} (ms)",
                                                                  f"eager/ort b{b}"))],
                    tablefmt="github", disable_numparse=True)


def _speeds(ms: dict) -> tuple[float, float, float]:
    return ms["eager"], ms["onnxruntime"], ms["eager"] / ms["onnxruntime"]


def _fusion_table(res: Results, names: list[str], batches: list[str]) -> str:
    rows = []
    for name in names:
        forms = res.first(name)["export"]["forms"]
        u, f = forms["unfused"], forms["deployed"]
        pair = lambda key, scale, spec: f"{u[key] / scale:{spec}} → {f[key] / scale:{spec}}"  # noqa: E731
        rows.append([name, pair("params", 1e6, ".3f"), pair("flops", 1e6, ".1f"), pair("checkpoint_bytes", 1e3, ".0f"),
                     *(f"{u['latency_ms'][f'batch_{b}'][rt]:.2f} → {f['latency_ms'][f'batch_{b}'][rt]:.2f} "
                       f"({u['latency_ms'][f'batch_{b}'][rt] / f['latency_ms'][f'batch_{b}'][rt]:.2f}x)"
                       for b in batches for rt in ("eager", "onnxruntime"))])
    return tabulate(rows, headers=["run", "params (M)", "MFLOPs", "checkpoint (kB)",
                                   *(f"{rt} b{b} (ms)" for b in batches for rt in ("eager", "onnxruntime"))],
                    tablefmt="github", disable_numparse=True)
