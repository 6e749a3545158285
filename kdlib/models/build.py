"""Build a registry model by name, in its ACB or deployed form if asked (the conversion is kdlib.reparam's)."""
import importlib

from kdlib.errors import KDError
from kdlib.models.registry import MODELS, PRETRAINED
from kdlib.reparam.acb import to_acb
from kdlib.reparam.fusion import to_deploy

BLOCK_TYPES = ("base", "acb")


def build_model(name: str, num_classes: int, width: float = 1.0, block_type: str = "base", deployed: bool = False,
                pretrained: bool = False):
    """Construct a registry model by name.

    `block_type: acb` swaps every eligible conv for an ACB block. `deployed` gives the inference form that
    fusing such a model yields: each of those convs becomes one conv with bias, the BN after it gone.
    The deployed form of `acb` and of `base` is the same network, so it is saved as `base`.
    `pretrained` (models in PRETRAINED only) starts from published weights.
    """
    if name not in MODELS:
        raise KDError(f"unknown model '{name}' (known: {', '.join(MODELS)})")
    if block_type not in BLOCK_TYPES:
        raise KDError(f"unknown block_type '{block_type}' (known: {', '.join(BLOCK_TYPES)})")
    if pretrained and name not in PRETRAINED:
        raise KDError(f"model '{name}' has no published weights (pretrained models: {', '.join(sorted(PRETRAINED))})")
    module, function = MODELS[name].split(":")
    extra = {"pretrained": True} if pretrained else {}
    model = getattr(importlib.import_module(module), function)(num_classes=num_classes, width=width, **extra)
    if block_type == "acb" or deployed:
        model = to_acb(model)
    if deployed:
        model = to_deploy(model)
    return model
