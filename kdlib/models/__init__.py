"""Model registry. Importing it is cheap (no torch): config validation and the DAG use the names."""
import importlib

from kdlib.errors import KDError

# name -> "module:constructor"; every constructor takes (num_classes, width=1.0).
MODELS = {
    "lenet5bn": "kdlib.models.lenet:lenet5bn",
    "lenet5bn_deep": "kdlib.models.lenet:lenet5bn_deep",
    "cifar_quick": "kdlib.models.cifar_quick:cifar_quick",
    "cifar_quick_deep": "kdlib.models.cifar_quick:cifar_quick_deep",
    "vgg16": "kdlib.models.vgg:vgg16",
    "vgg_shallow": "kdlib.models.vgg:vgg_shallow",
    "resnet20": "kdlib.models.resnet:resnet20",
    "resnet56": "kdlib.models.resnet:resnet56",
    "resnet8x4": "kdlib.models.resnet:resnet8x4",
    "resnet32x4": "kdlib.models.resnet:resnet32x4",
    "wrn_16_2": "kdlib.models.wrn:wrn_16_2",
    "wrn_40_2": "kdlib.models.wrn:wrn_40_2",
    "mobilenetv2": "kdlib.models.mobilenetv2:mobilenetv2",
    # torchvision's ImageNet architectures, adapted to 32x32 inputs; these take `pretrained`.
    "resnet18": "kdlib.models.torchvision_zoo:resnet18",
    "resnet34": "kdlib.models.torchvision_zoo:resnet34",
    "resnet101": "kdlib.models.torchvision_zoo:resnet101",
    "efficientnetv2_s": "kdlib.models.torchvision_zoo:efficientnetv2_s",
    "efficientnetv2_l": "kdlib.models.torchvision_zoo:efficientnetv2_l",
}
PRETRAINED = {name for name, target in MODELS.items() if target.startswith("kdlib.models.torchvision_zoo:")}
# Stages before the head, for checks that need no torch (blockwise KD pairs stage with stage); a test builds
# every model and compares.
STAGES = {"lenet5bn": 2, "lenet5bn_deep": 2, "cifar_quick": 3, "cifar_quick_deep": 3, "vgg16": 5, "vgg_shallow": 5,
          "resnet20": 3, "resnet56": 3, "resnet8x4": 3, "resnet32x4": 3, "wrn_16_2": 3, "wrn_40_2": 3,
          "mobilenetv2": 4, "resnet18": 4, "resnet34": 4, "resnet101": 4, "efficientnetv2_s": 5, "efficientnetv2_l": 5}


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
        from kdlib.reparam.acb import to_acb
        model = to_acb(model)
    if deployed:
        from kdlib.reparam.fusion import to_deploy
        model = to_deploy(model)
    return model
