"""Export one dense student (scratch or kd) to ONNX: results/<profile>/dense/<name>/<role>/model.onnx and
export.json (parity with PyTorch by the task's metric on every held-out image, parameters, FLOPs, latency).

Fails, writing nothing, if onnxruntime's outputs differ from PyTorch's by more than 1e-4, or its PSNR by more than
0.01 dB or its Dice by more than 0.001.
"""

from kdlib import warm

warm.delegate()  # first: under `python -m kdlib.warm`, a fork of a process with torch imported runs the job

from kdlib.cli import require, stage_main
from kdlib.config import DENSE_STUDENTS
from kdlib.export.dense_export import export_dense


def main(params, name, role):
    require(params, "dense", name)
    r = export_dense(params, name, role)
    parity = ", ".join(f"{k} {v:.4g}" for k, v in r["parity"].items() if isinstance(v, float))
    ms = r["latency_ms"]["batch_1"]
    print(f"dense {name} {role}: model.onnx (opset {r['onnx']['opset']}, {r['onnx']['bytes'] / 1e6:.2f} MB) = PyTorch "
          f"on all {r['parity']['num_test']} held-out images ({parity}); ms per image: eager {ms['eager']:.2f} / "
          f"onnxruntime {ms['onnxruntime']:.2f}")


if __name__ == "__main__":
    stage_main(__doc__, main, roles=DENSE_STUDENTS)
