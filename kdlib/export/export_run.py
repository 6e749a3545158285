"""A finished run's inference form, evaluated on its whole test split (results/<profile>/runs/<name>/eval.json), exported to
model.onnx, proven to compute what PyTorch computed there, and timed: export.json. One pass of PyTorch over the
test split serves both the evaluation and the parity check."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import onnxruntime
import torch
from torch import nn

from kdlib.config import Export, Params
from kdlib.data.prepared import load_prepared, test_loader
from kdlib.atomic import atomic_write_text
from kdlib.engine.checkpoint import inference_model, trained_model
from kdlib.engine.evaluate import evaluate, test_report, top3_samples
from kdlib.engine.latency import alternating_median_ms
from kdlib.counting import count_flops, count_parameters
from kdlib.errors import KDError
from kdlib.export.onnx_model import INPUT, OUTPUT, Deployable, example_images, export_onnx, opset, predict, session
from kdlib.export.parity import parity

def export_run(name: str, params: Params) -> tuple[dict, dict]:
    """eval.json, samples.json, model.onnx and export.json for one run (returned: the evaluation and the export
    report), or none of them: the stage fails if the ONNX model's logits differ from PyTorch's by more than the tolerance, or
    its top-1 class does, on any test image."""
    run = params.runs[name]
    folder = params.layout.run_dir(name)
    files = load_prepared(params.layout.dataset_dir(run.dataset))
    shape = tuple(files.test.images.shape[1:])
    checkpoint = params.layout.inference_checkpoint(name, run.block_type)
    model = inference_model(params, name, files.num_classes).eval()
    threads = torch.get_num_threads()
    evaluation = evaluate(model, test_loader(files, run.batch_size), torch.device("cpu"))
    metadata = classifier_metadata(params, name, files.meta)
    # Scratch beside the target, so the final rename never crosses file systems (a cluster node's /tmp).
    with tempfile.TemporaryDirectory(dir=folder, prefix=".export-", suffix=".tmp") as scratch:
        exported_path = Path(scratch) / "model.onnx"
        export_onnx(deployable(model, files.meta), exported_path, example_images(shape), metadata)
        exported = session(exported_path, threads)
        check = parity(evaluation["logits"], exported, files.test.images, files.test.labels, run.batch_size)
        if not check["passed"]:
            raise KDError(f"{checkpoint}: the ONNX export computes other logits than PyTorch (max |difference| "
                          f"{check['max_abs_logit_diff']:.3g}, tolerance {check['tolerance']:g}; top-1 differs on "
                          f"{len(check['differing_top1'])} of {check['num_test']} test images, first: "
                          f"{check['differing_top1'][:5]}); model.onnx was not written")
        forms = {"deployed": (checkpoint, model, exported_path)}
        if run.block_type == "acb":  # what fusing saved: the trained branches, in both runtimes
            unfused = trained_model(params, name, files.num_classes).eval()
            export_onnx(deployable(unfused, files.meta), Path(scratch) / "unfused.onnx", example_images(shape))
            forms["unfused"] = (folder / "model.pt", unfused, Path(scratch) / "unfused.onnx")
        sessions = {form: session(path, threads) for form, (_, _, path) in forms.items()}
        timings = latencies({form: (deployable(model, files.meta), sessions[form])
                             for form, (_, model, _) in forms.items()}, shape, params.export)
        report = {"run": name, "model": run.model, "width": run.width, "block_type": run.block_type,
                  "onnx": {"file": "model.onnx", "bytes": exported_path.stat().st_size, "opset": opset(exported_path),
                           "input": INPUT, "output": OUTPUT, "dynamic_batch": True, "metadata": metadata},
                  "parity": {k: v for k, v in check.items() if k != "passed"},
                  "threads": threads, "latency_seconds": params.export.latency_seconds, "torch": torch.__version__,
                  "onnxruntime": onnxruntime.__version__,
                  "image_shape": list(shape),
                  "forms": {form: {"checkpoint": path.name, "checkpoint_bytes": path.stat().st_size,
                                   "onnx_bytes": onnx_path.stat().st_size, "params": count_parameters(model),
                                   "flops": count_flops(model, shape), "latency_ms": timings[form]}
                            for form, (path, model, onnx_path) in forms.items()}}
        tested = test_report(evaluation, files.meta["classes"])
        exported_path.replace(folder / "model.onnx")
    atomic_write_text(folder / "export.json", json.dumps(report, indent=2))
    samples = {"checkpoint": checkpoint.name, "top3": top3_samples(evaluation["logits"], evaluation["labels"])}
    atomic_write_text(folder / "samples.json", json.dumps(samples, indent=2))
    atomic_write_text(folder / "eval.json", json.dumps(tested, indent=2))
    return tested, report


def deployable(model: nn.Module, meta: dict) -> Deployable:
    """The classifier as model.onnx holds it: uint8 images in, normalised by the training split's statistics."""
    return Deployable(model, meta["mean"], meta["std"]).eval()


def classifier_metadata(params: Params, name: str, meta: dict) -> dict:
    """What model.onnx says about itself: enough for onnxruntime alone to classify an image file."""
    size, channels = meta["image_size"], len(meta["mean"])
    return {"task": "classification", "run": name, "profile": params.profile, "model": params.runs[name].model,
            "classes": meta["classes"], "image_size": size, "channels": channels,
            "input": f"{INPUT}: uint8 N x {channels} x {size} x {size}, {'RGB' if channels == 3 else 'grey'} 0-255; "
                     f"resize the image to {size}x{size} first",
            "preprocessing": f"inside the graph: x / 255, minus mean {[round(m, 4) for m in meta['mean']]}, divided "
                             f"by std {[round(s, 4) for s in meta['std']]} (per channel, from the training split)",
            "output": f"{OUTPUT}: float32 N x {len(meta['classes'])}, in the order of classes (softmax for "
                      "probabilities)"}


@torch.no_grad()
def latencies(forms: dict[str, tuple[nn.Module, onnxruntime.InferenceSession]], shape: tuple[int, ...],
              spec: Export) -> dict:
    """Median ms per batch of every form in PyTorch eager and in onnxruntime, at each of the spec's batch sizes: on
    one random batch, all candidates of a batch size taking turns (warm-up calls are not timed)."""
    out: dict = {form: {} for form in forms}
    for batch in spec.latency_batches:
        x = example_images(shape).repeat((batch + 1) // 2, 1, 1, 1)[:batch]
        keys = [(form, runtime) for form in forms for runtime in ("eager", "onnxruntime")]
        calls = [(lambda m=model: m(x)) if runtime == "eager" else (lambda s=sess: predict(s, x))
                 for form, (model, sess) in forms.items() for runtime in ("eager", "onnxruntime")]
        for (form, runtime), ms in zip(keys, alternating_median_ms(calls, spec.latency_seconds)):
            out[form].setdefault(f"batch_{batch}", {})[runtime] = ms
    return out
