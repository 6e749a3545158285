"""Deployment: every kind of exported model (classifier, SR network, edge U-Net) takes an image file through
onnxruntime alone, fed as its own metadata says (no kdlib, no torch on that side), and gives what PyTorch gave:
the class, the SR image's PSNR, the edge map."""
import json

import numpy as np
import onnxruntime
import torch
from PIL import Image

from kdlib.config import load_params
from kdlib.data.prepared import load_prepared, normalize
from kdlib.dense.image_metrics import sr_scores
from kdlib.engine.checkpoint import inference_model


def onnx_alone(model_file, image_file):
    """What the README's deployment snippet does: open the image, size it as the metadata says, feed uint8 NCHW."""
    runtime = onnxruntime.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    meta = runtime.get_modelmeta().custom_metadata_map
    image = Image.open(image_file).convert("RGB" if meta.get("channels", "3") == "3" else "L")
    if "image_size" in meta:
        image = image.resize((int(meta["image_size"]),) * 2)
    x = np.asarray(image)
    x = x[None, None] if x.ndim == 2 else x.transpose(2, 0, 1)[None]
    return meta, runtime.run(None, {runtime.get_inputs()[0].name: np.ascontiguousarray(x)})[0]


def save_png(image: torch.Tensor, path) -> None:
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(path)


def test_a_classifier_names_the_class_of_an_image_file(finished, tmp_path, monkeypatch):
    monkeypatch.chdir(finished)  # checkpoints are found relative to the project root
    params = load_params("params.yaml")
    files = load_prepared(finished / "data/tiny/digits")
    for name in ("student_acb", "student_kd"):  # a fused ACB run and a distilled one
        model = finished / "results/tiny/runs" / name / "model.onnx"
        with torch.no_grad():
            pytorch = inference_model(params, name, files.num_classes).eval()(normalize(files.test.images[:8], files.meta))
        for i in range(8):
            save_png(files.test.images[i], tmp_path / f"{i}.png")
            meta, logits = onnx_alone(model, tmp_path / f"{i}.png")
            classes = json.loads(meta["classes"])
            assert meta["task"] == "classification" and classes == files.meta["classes"]
            assert logits.shape == (1, len(classes))
            assert classes[int(logits.argmax())] == files.meta["classes"][int(pytorch[i].argmax())]
            assert np.abs(logits[0] - pytorch[i].numpy()).max() <= 1e-4


def test_the_sr_student_upscales_an_image_file_to_its_measured_psnr(finished, tmp_path):
    test = torch.load(finished / "data/tiny/dense/sr_tiny/test.pt", weights_only=True)
    save_png(test["lr"][0], tmp_path / "low.png")
    for role in ("scratch", "kd"):
        folder = finished / "results/tiny/dense/sr_tiny" / role
        meta, sr = onnx_alone(folder / "model.onnx", tmp_path / "low.png")
        scale = int(meta["scale"])
        assert meta["task"] == "super_resolution" and sr.shape == (1, 3, *(scale * s for s in test["lr"][0].shape[1:]))
        assert sr.min() >= 0 and sr.max() <= 1
        psnr = sr_scores(torch.from_numpy(sr), test["hr"][0][None].float() / 255, scale)["psnr_y"]
        # The held-out split is this one image: the training stage measured PyTorch's PSNR on it.
        assert abs(psnr - json.loads((folder / "metrics.json").read_text())["final"]["psnr_y"]) <= 0.01


def test_the_edge_student_maps_the_boundaries_of_an_image_file(finished, tmp_path):
    test = torch.load(finished / "data/tiny/dense/edges_tiny/test.pt", weights_only=True)
    for role in ("scratch", "kd"):
        folder = finished / "results/tiny/dense/edges_tiny" / role
        kept = torch.load(folder / "predictions.pt", weights_only=True)["outputs"]  # PyTorch's maps, 8-bit
        for i, pytorch in enumerate(kept):
            save_png(test["images"][i], tmp_path / f"{i}.png")
            meta, edges = onnx_alone(folder / "model.onnx", tmp_path / f"{i}.png")
            assert meta["task"] == "edges" and 0 < float(meta["threshold"]) < 1
            assert edges.shape == (1, 1, *pytorch.shape)
            assert np.abs(np.round(edges[0, 0] * 255) - pytorch.numpy().astype(float)).max() <= 1
