"""The networks of a dense experiment, built from its params: SR models by name, U-Nets by encoder. Network
modules are imported through the registry by string, so a stage that imports this module depends on none of them
(the DAG adds the ones each role builds: kdlib.dense.registry.role_modules)."""
from __future__ import annotations

from torch import nn

from kdlib.config import EdgeExperiment, SRExperiment
from kdlib.dense.checks import check
from kdlib.dense.registry import SR_MODELS, UNET, resolve
from kdlib.errors import KDError


def build_net(name: str, exp: SRExperiment | EdgeExperiment, role: str) -> nn.Module:
    """The teacher's network, or the student's (for roles `scratch` and `kd`)."""
    check(name, exp)
    net = exp.net(role)
    if exp.task == "super_resolution":
        try:
            return resolve(SR_MODELS[net.model])(scale=exp.data.scale, **net.args)
        except (TypeError, ValueError) as e:
            raise KDError(f"dense.{name}.{'teacher' if role == 'teacher' else 'student'}.args: {e}") from None
    # imports segmentation-models-pytorch: only where a U-Net is built
    return resolve(UNET)(net.encoder, net.encoder_weights, tuple(net.decoder_channels))
