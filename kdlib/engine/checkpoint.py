"""Model checkpoints: what a finished run leaves behind, loaded safely and checked against expectations."""
from __future__ import annotations

from pathlib import Path

from torch import nn

from kdlib.config import Run
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
    missing = [k for k in ("model", "width", "num_classes", "state_dict") if k not in blob]
    if missing or not isinstance(blob["state_dict"], dict):
        raise KDError(f"{path}: incomplete kdlib checkpoint (missing or malformed: {', '.join(missing) or 'state_dict'})")
    if expect_model is not None and blob["model"] != expect_model:
        raise KDError(f"{path}: holds a '{blob['model']}' model, but '{expect_model}' is expected")
    if expect_classes is not None and blob["num_classes"] != expect_classes:
        raise KDError(f"{path}: was trained for {blob['num_classes']} classes, but the dataset has {expect_classes}")
    try:
        model = build_model(blob["model"], blob["num_classes"], blob["width"], blob.get("block_type", "base"),
                            bool(blob.get("deployed", False)))
    except KDError as e:
        raise KDError(f"{path}: {e}") from None
    try:
        model.load_state_dict(blob["state_dict"])
    except (RuntimeError, TypeError) as e:
        raise KDError(f"{path}: weights do not fit a '{blob['model']}' (width {blob['width']}, "
                      f"block_type {blob.get('block_type', 'base')}{', deployed' if blob.get('deployed') else ''}): "
                      f"{str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else e}") from None
    return model, blob
