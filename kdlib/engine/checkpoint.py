"""Model checkpoints: what a finished run leaves behind, loaded safely and checked against expectations."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from kdlib.config import Params, Run
from kdlib.atomic import atomic_torch_save
from kdlib.checkpoint_io import read_checkpoint
from kdlib.errors import KDError
from kdlib.models.build import build_model

FORMAT = "kdlib-model-1"


def save_model(path: Path, run_name: str, run: Run, model: nn.Module, num_classes: int,
               deployed: bool = False) -> None:
    """`deployed`: the model is the fused inference form (saved as block_type base, see build_model)."""
    atomic_torch_save({"format": FORMAT, "run": run_name, "model": run.model, "width": run.width,
                       "block_type": "base" if deployed else run.block_type, "deployed": deployed,
                       "num_classes": num_classes, "config": run.model_dump(mode="json"),
                       "state_dict": model.state_dict()}, path)


def load_model(path: Path, expect_model: str | None = None, expect_classes: int | None = None) -> tuple[nn.Module, dict]:
    """Rebuild the model a checkpoint was trained as; stop on any mismatch with what the caller needs."""
    blob = read_checkpoint(path)
    if blob.get("format") != FORMAT:
        raise KDError(f"{path}: not a kdlib model checkpoint (format {blob.get('format')!r}, expected {FORMAT!r})")
    kinds = {"model": str, "width": (int, float), "num_classes": int, "state_dict": dict, "block_type": str,
             "deployed": bool}
    malformed = [k for k, kind in kinds.items() if k in blob and (not isinstance(blob[k], kind) or
                                                                    (kind is not bool and isinstance(blob[k], bool)))]
    missing = [k for k in ("model", "width", "num_classes", "state_dict") if k not in blob]
    if missing or malformed:
        raise KDError(f"{path}: incomplete kdlib checkpoint (missing or malformed: {', '.join(missing + malformed)})")
    if expect_model is not None and blob["model"] != expect_model:
        raise KDError(f"{path}: holds a '{blob['model']}' model, but '{expect_model}' is expected")
    if expect_classes is not None and blob["num_classes"] != expect_classes:
        raise KDError(f"{path}: was trained for {blob['num_classes']} classes, but the dataset has {expect_classes}")
    try:
        model = build_model(blob["model"], blob["num_classes"], blob["width"], blob.get("block_type", "base"),
                            bool(blob.get("deployed", False)))
    except KDError as e:
        raise KDError(f"{path}: {e}") from None
    diverged = next((k for k, v in blob["state_dict"].items()
                     if isinstance(v, torch.Tensor) and v.is_floating_point() and not torch.isfinite(v).all()), None)
    if diverged is not None:
        raise KDError(f"{path}: holds NaN or infinite weights ({diverged}); the run that wrote it diverged: "
                      "retrain it (a lower learning rate, or amp: none)")
    try:
        model.load_state_dict(blob["state_dict"])
    except (RuntimeError, TypeError) as e:
        raise KDError(f"{path}: weights do not fit a '{blob['model']}' (width {blob['width']}, "
                      f"block_type {blob.get('block_type', 'base')}{', deployed' if blob.get('deployed') else ''}): "
                      f"{str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else e}") from None
    return model, blob


def load_run_model(path: Path, name: str, run: Run, num_classes: int, deployed: bool, rerun: str) -> nn.Module:
    """The model of run `name` from `path`, checked to be what the DAG says it is: that run's checkpoint, trained
    with the recipe `run` has now, in the form asked for (fused deploy.pt or trained model.pt). `rerun` is the
    command that makes it again, for the message."""
    model, blob = load_model(path, run.model, num_classes)
    if blob.get("run") != name:
        raise KDError(f"{path}: is the checkpoint of run '{blob.get('run')}', not of '{name}'; {rerun}")
    if blob.get("deployed", False) != deployed:
        raise KDError(f"{path}: holds the {'fused (deployed)' if blob.get('deployed') else 'unfused (trained)'} "
                      f"form, but the {'fused' if deployed else 'unfused'} one is expected here; {rerun}")
    now, then = run.model_dump(mode="json"), blob.get("config")
    if then != now:
        key = next((k for k in sorted(now) if not isinstance(then, dict) or then.get(k) != now[k]), "config")
        raise KDError(f"{path}: was trained with other params than run '{name}' has now (runs.{name}.{key}); {rerun}")
    return model


def trained_model(params: Params, name: str, num_classes: int) -> nn.Module:
    """Run `name`'s model.pt as trained (an ACB run's unfused branches), checked by load_run_model."""
    run = params.runs[name]
    return load_run_model(params.layout.run_dir(name) / "model.pt", name, run, num_classes, False,
                          f"rerun `{params.command('stages/train.py', name)}`")


def teacher_checkpoint(params: Params, name: str) -> Path:
    """A student learns from its teacher's inference form: the fused model when the teacher is an ACB run."""
    teacher = params.runs[name].teacher
    return params.layout.inference_checkpoint(teacher, params.runs[teacher].block_type)


def inference_model(params: Params, name: str, num_classes: int) -> nn.Module:
    """Run `name`'s inference form (what evaluation, export and its students use): the fused deploy.pt of an ACB
    run, else its model.pt, checked by load_run_model."""
    run = params.runs[name]
    fused = run.block_type == "acb"
    rerun = "rerun " + " then ".join(f"`{params.command(script, name)}`"
                                     for script in ["stages/train.py", *(["stages/fuse.py"] if fused else [])])
    return load_run_model(params.layout.inference_checkpoint(name, run.block_type), name, run, num_classes, fused, rerun)
