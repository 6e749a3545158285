"""The model registry: names, where their constructors live, their stage counts. Torch-free: validation and the
DAG builder read it without importing model code, and the DAG makes a run depend on its own model's module only."""

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
    # torchvision's ImageNet architectures, adapted to 32x32 inputs.
    "resnet18": "kdlib.models.torchvision_zoo:resnet18",
    "resnet34": "kdlib.models.torchvision_zoo:resnet34",
    "resnet101": "kdlib.models.torchvision_zoo:resnet101",
    "efficientnetv2_s": "kdlib.models.torchvision_zoo:efficientnetv2_s",
    "efficientnetv2_l": "kdlib.models.torchvision_zoo:efficientnetv2_l",
    # Transformers (seed 003): ViT-T and its depth-8 student, Swin-T and Swin-S at 32x32; Swin at 224x224.
    "vit_t": "kdlib.models.vit:vit_t",
    "vit_t_d8": "kdlib.models.vit:vit_t_d8",
    "swin_t": "kdlib.models.swin:swin_t",
    "swin_s": "kdlib.models.swin:swin_s",
    "swin_t_224": "kdlib.models.swin:swin_t_224",
    "swin_s_224": "kdlib.models.swin:swin_s_224",
}
# Models whose constructors take `pretrained` (torchvision's published ImageNet weights).
PRETRAINED = {"resnet18", "resnet34", "resnet101", "efficientnetv2_s", "efficientnetv2_l", "swin_t_224", "swin_s_224"}
# Stages before the head, for checks that need no torch (blockwise KD pairs stage with stage); a test builds
# every model and compares.
STAGES = {"lenet5bn": 2, "lenet5bn_deep": 2, "cifar_quick": 3, "cifar_quick_deep": 3, "vgg16": 5, "vgg_shallow": 5,
          "resnet20": 3, "resnet56": 3, "resnet8x4": 3, "resnet32x4": 3, "wrn_16_2": 3, "wrn_40_2": 3,
          "mobilenetv2": 4, "resnet18": 4, "resnet34": 4, "resnet101": 4, "efficientnetv2_s": 5, "efficientnetv2_l": 5,
          "vit_t": 4, "vit_t_d8": 4, "swin_t": 4, "swin_s": 4, "swin_t_224": 4, "swin_s_224": 4}


def model_module(name: str) -> str:
    """The module that defines a registry model (a code dependency of every stage that builds it)."""
    return MODELS[name].split(":")[0]
