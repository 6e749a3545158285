"""The networks of a dense experiment, built from its params: SR models by name, U-Nets by encoder."""
from __future__ import annotations

import inspect

from torch import nn

from kdlib.config import EdgeExperiment, SRExperiment
from kdlib.data.sources import PHOTOS
from kdlib.dense.sr_models import SR_MODELS
from kdlib.errors import KDError


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
        takes = [p for p in inspect.signature(SR_MODELS[net.model]).parameters if p != "scale"]
        out += [f"{key}.args.{arg}: '{net.model}' takes no argument '{arg}' (it takes: {', '.join(takes)})"
                for arg in net.args if arg not in takes]
    if exp.data.source == "photos":
        for key in ("train_images", "eval_images"):
            out += [f"dense.{name}.data.{key}: unknown photo '{p}' (known: {', '.join(PHOTOS)})"
                    for p in getattr(exp.data, key) if p not in PHOTOS]
    return out


def check(name: str, exp: SRExperiment | EdgeExperiment) -> None:
    found = problems(name, exp)
    if found:
        raise KDError(found[0] if len(found) == 1 else "\n  " + "\n  ".join(found))


def build_net(name: str, exp: SRExperiment | EdgeExperiment, role: str) -> nn.Module:
    """The teacher's network, or the student's (for roles `scratch` and `kd`)."""
    check(name, exp)
    net = exp.net(role)
    if exp.task == "super_resolution":
        try:
            return SR_MODELS[net.model](scale=exp.data.scale, **net.args)
        except (TypeError, ValueError) as e:
            raise KDError(f"dense.{name}.{'teacher' if role == 'teacher' else 'student'}.args: {e}") from None
    from kdlib.dense.edge_models import unet  # imports segmentation-models-pytorch: only where a U-Net is built
    return unet(net.encoder, net.encoder_weights, tuple(net.decoder_channels))
