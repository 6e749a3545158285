"""Where the networks of seed 002's dense experiments live. Torch-free: validation and the DAG builder read it
without importing network code, and the DAG makes each role of an experiment depend on the modules of the networks
it builds only (`role_modules`), so editing the student's network does not re-run the teacher.

Code that builds a network goes through `resolve` (importlib, by string), never a static import, so that the
import closure of the dense stage scripts reaches no network module."""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from kdlib.config.dense import DENSE_ROLES
from kdlib.errors import KDError

if TYPE_CHECKING:
    from kdlib.config import EdgeExperiment, SRExperiment

# Super-resolution model name -> "module:constructor"; every constructor takes keyword arguments only, `scale` and
# the model's own (a params file's `args`).
SR_MODELS = {
    "swinir": "kdlib.dense.swinir:SwinIR",
    "edsr": "kdlib.dense.edsr:EDSR",
    "attention_srnet": "kdlib.dense.attention_sr:AttentionSRNet",
}
# The edge task's U-Net builder (takes encoder, encoder_weights, decoder_channels).
UNET = "kdlib.dense.edge_models:unet"
# The VGG feature distance a distilled SR student learns from (takes weights, layer).
PERCEPTUAL = "kdlib.dense.perceptual:VGGPerceptual"


def module_of(target: str) -> str:
    """"a.b:f" -> "a.b"."""
    return target.split(":")[0]


def sr_module(model: str) -> str:
    """The module that defines a super-resolution model."""
    if model not in SR_MODELS:
        raise KDError(f"unknown super-resolution model '{model}' (known: {', '.join(SR_MODELS)})")
    return module_of(SR_MODELS[model])


def resolve(target: str) -> Any:
    """The object that "module:name" names, its module imported on demand."""
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def role_entries(exp: SRExperiment | EdgeExperiment, role: str) -> list[str]:
    """The entries of this registry that one role of a dense experiment builds or runs (`SR_MODELS.swinir`, `UNET`,
    `PERCEPTUAL`): the teacher's network for `teacher`, the student's for `scratch`, and for `kd` the student's, the
    teacher's (loaded to teach) and, for super-resolution, the perceptual loss."""
    nets = _nets(exp, role)
    if exp.task != "super_resolution":
        return ["UNET"]
    for net in nets:
        sr_module(net.model)  # an unknown name: one clear error
    return list(dict.fromkeys([f"SR_MODELS.{net.model}" for net in nets] + (["PERCEPTUAL"] if role == "kd" else [])))


def _nets(exp: SRExperiment | EdgeExperiment, role: str) -> list:
    """The networks a role builds: the teacher's; the student's; the student's and the teacher's (for `kd`)."""
    if role not in DENSE_ROLES:
        raise KDError(f"unknown dense role '{role}' (known: {', '.join(DENSE_ROLES)})")
    return {"teacher": [exp.teacher], "scratch": [exp.student], "kd": [exp.student, exp.teacher]}[role]


def role_modules(exp: SRExperiment | EdgeExperiment, role: str) -> list[str]:
    """The kdlib modules whose code builds or runs the networks of one role of a dense experiment."""
    table = {"SR_MODELS": SR_MODELS, "UNET": UNET, "PERCEPTUAL": PERCEPTUAL}
    targets = [table[e] if "." not in e else SR_MODELS[e.split(".", 1)[1]] for e in role_entries(exp, role)]
    return list(dict.fromkeys(module_of(t) for t in targets))
