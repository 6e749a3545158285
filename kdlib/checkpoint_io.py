"""Reading a checkpoint file safely (weights only), for every stage that loads one."""
from pathlib import Path

import torch

from kdlib.errors import KDError


def read_checkpoint(path: Path) -> dict:
    """torch.load with weights_only=True; any failure becomes one message naming the file."""
    path = Path(path)
    if not path.is_file():
        raise KDError(f"{path}: checkpoint not found; run the stage that writes it first")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, bad pickle, foreign objects refused by weights_only, ...
        raise KDError(f"{path}: checkpoint cannot be read, it is truncated or corrupt ({type(e).__name__}: "
                      f"{str(e).splitlines()[0] if str(e) else ''}); delete it and rerun the stage that writes it") from None
    if not isinstance(blob, dict):
        raise KDError(f"{path}: not a kdlib checkpoint (holds a {type(blob).__name__})")
    return blob
