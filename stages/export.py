"""Evaluate a finished run's inference form (an ACB run's fused deploy.pt) on its whole test split and export it
to ONNX: results/<profile>/runs/<name>/eval.json (accuracy, loss, per class), samples.json (top-3 on 24 test images),
model.onnx and export.json (parity with PyTorch on the test split, parameters, FLOPs, sizes, latencies).

Fails, writing nothing, if onnxruntime's logits differ from PyTorch's by more than 1e-4 or its top-1 class does,
on any test image.
"""

from kdlib import warm

warm.delegate()  # first: under `python -m kdlib.warm`, a fork of a process with torch imported runs the job

from kdlib.cli import require, stage_main
from kdlib.export.export_run import export_run


def main(params, name):
    require(params, "runs", name)
    tested, r = export_run(name, params)
    p, ms = r["parity"], r["forms"]["deployed"]["latency_ms"]
    print(f"{name}: test acc {tested['test_acc']:.2f}% on {tested['num_test']} images "
          f"({r['forms']['deployed']['checkpoint']})")
    print(f"{name}: model.onnx (opset {r['onnx']['opset']}, {r['onnx']['bytes'] / 1e6:.2f} MB) = PyTorch on all "
          f"{p['num_test']} test images (top-1 {p['onnx_test_acc']:.2f}%, max |logit diff| {p['max_abs_logit_diff']:.2g}); "
          f"ms per batch, {r['threads']} threads: " + ", ".join(
              f"{b.split('_')[1]}: eager {t['eager']:.2f} / onnxruntime {t['onnxruntime']:.2f}" for b, t in ms.items()))


if __name__ == "__main__":
    stage_main(__doc__, main)
