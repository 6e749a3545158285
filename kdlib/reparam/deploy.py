"""Fuse a trained ACB run into its deploy checkpoint, after proving both forms predict alike."""
from __future__ import annotations

import contextlib
import json

import torch

from kdlib.config import Params
from kdlib.data.prepared import load_prepared, test_loader
from kdlib.atomic import atomic_write_text
from kdlib.engine.checkpoint import save_model, trained_model
from kdlib.engine.evaluate import evaluate
from kdlib.engine.latency import latency_ms
from kdlib.counting import count_flops, count_parameters
from kdlib.errors import KDError
from kdlib.models.build import build_model
from kdlib.reparam.fusion import to_deploy

LATENCY_SECONDS = 1.5  # timing budget for the three models together


def fuse_run(name: str, params: Params, device: torch.device) -> dict:
    """results/<profile>/runs/<name>/model.pt (ACB) -> deploy.pt (plain convs) and fuse.json.

    The fused model must give the same class as the unfused one on every test image; otherwise
    nothing is written and the stage fails.
    """
    run = params.runs[name]
    if run.block_type != "acb":
        raise KDError(f"runs.{name}: block_type is '{run.block_type}'; only ACB runs are fused")
    folder = params.layout.run_dir(name)
    files = load_prepared(params.layout.dataset_dir(run.dataset))
    model = trained_model(params, name, files.num_classes)
    model = model.to(device).eval()
    deployed = to_deploy(model)
    loader = test_loader(files, run.batch_size)
    with full_fp32():
        unfused, fused = evaluate(model, loader, device), evaluate(deployed, loader, device)
    differ = (unfused["predictions"] != fused["predictions"]).nonzero().flatten().tolist()
    max_diff = (unfused["logits"] - fused["logits"]).abs().max().item()
    scale = unfused["logits"].abs().max().item()
    if differ:
        raise KDError(f"{folder / 'model.pt'}: the fused model predicts another class than the unfused one on "
                      f"{len(differ)} of {len(fused['predictions'])} test images (first: {differ[:5]}; max |logit "
                      f"difference| {max_diff:.3g}, logit scale {scale:.3g}); deploy.pt was not written")
    shape = tuple(files.test.images.shape[1:])
    plain = build_model(run.model, files.num_classes, run.width)
    unfused_ms, fused_ms, plain_ms = latency_ms([model, deployed, plain], (run.batch_size, *shape), device,
                                                LATENCY_SECONDS)
    report = {"run": name, "model": run.model, "num_test": len(fused["predictions"]),
              "identical_predictions": True, "max_abs_logit_diff": max_diff, "logit_scale": scale,
              "unfused_test_acc": unfused["acc"], "fused_test_acc": fused["acc"],
              "params": {"unfused": count_parameters(model), "fused": count_parameters(deployed),
                         "plain": count_parameters(plain)},
              "flops": {"unfused": count_flops(model, shape), "fused": count_flops(deployed, shape),
                        "plain": count_flops(plain, shape)},
              "latency_ms_per_batch": {"batch_size": run.batch_size, "device": str(device),
                                       "threads": torch.get_num_threads(),
                                       "unfused": unfused_ms, "fused": fused_ms, "plain": plain_ms}}
    save_model(folder / "deploy.pt", name, run, deployed, files.num_classes, deployed=True)
    atomic_write_text(folder / "fuse.json", json.dumps(report, indent=2))
    return report


@contextlib.contextmanager
def full_fp32():
    """CUDA computes float32 convs and matmuls in TF32 by default (errors near 1e-2 on logits), which would
    flip near-tie predictions between the two forms; the check compares them at full float32 precision."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
