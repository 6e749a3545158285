"""Checks of a dense experiment that params validation cannot make without the networks: SR model names and
their arguments, photo names. Not result code: it only refuses bad params, so no stage's result depends on it.
Network modules are imported by string, inside the checks, through the registry."""
from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

from kdlib.dense.registry import SR_MODELS, resolve
from kdlib.errors import KDError

if TYPE_CHECKING:
    from kdlib.config import EdgeExperiment, SRExperiment


def problems(name: str, exp: SRExperiment | EdgeExperiment) -> list[str]:
    """What params validation cannot see without the networks: SR model names and their arguments, photo names.
    (U-Net encoders are checked when built: listing them imports segmentation-models-pytorch, which is slow.)"""
    out = []
    if exp.task != "super_resolution":
        return out
    for role in ("teacher", "student"):
        net, key = getattr(exp, role), f"dense.{name}.{role}"
        if net.model not in SR_MODELS:
            out.append(f"{key}.model: unknown super-resolution model '{net.model}' (known: {', '.join(SR_MODELS)})")
            continue
        takes = [p for p in inspect.signature(resolve(SR_MODELS[net.model])).parameters if p != "scale"]
        out += [f"{key}.args.{arg}: '{net.model}' takes no argument '{arg}' (it takes: {', '.join(takes)})"
                for arg in net.args if arg not in takes]
    if exp.data.source == "photos":
        from kdlib.data.sources import PHOTOS  # imports torch (and kdlib.config): only for photo experiments
        for key in ("train_images", "eval_images"):
            out += [f"dense.{name}.data.{key}: unknown photo '{p}' (known: {', '.join(PHOTOS)})"
                    for p in getattr(exp.data, key) if p not in PHOTOS]
    return out


def check(name: str, exp: SRExperiment | EdgeExperiment) -> None:
    found = problems(name, exp)
    if found:
        raise KDError(found[0] if len(found) == 1 else "\n  " + "\n  ".join(found))
