"""Seed 002's dense tasks (Task 2): each experiment trains a teacher, a student without KD and the same student
with KD, one DAG node each. Model names, their args and photo names are checked against kdlib.dense (see
kdlib.dense.check), so that this module, which every stage imports, does not import the dense networks."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from kdlib.config.schema import COUNT, SEED, SIDE, Strict


class DenseTraining(Strict):
    """What the three runs of a dense experiment share: Adam at `lr`, batches, the seed."""
    batch_size: COUNT
    lr: Annotated[float, Field(gt=0, le=10)]  # Adam's
    seed: SEED = 0  # weights and batch order
    plateau_patience: Annotated[int, Field(ge=0, le=1_000_000)] | None = None  # ReduceLROnPlateau on the held-out loss; null: constant


class SRData(Strict):
    """HR images, degraded by Gaussian blur then bicubic down-sampling by `scale` (seed 002, Task 2.1)."""
    source: Literal["photos", "folder"] = "photos"
    train_images: list[str] | None = None  # photos: names of photos scikit-image and scikit-learn ship
    eval_images: list[str] | None = None  # held out for evaluation
    train_path: str | None = None  # folder: every image file in it (e.g. DIV2K_train_HR)
    eval_path: str | None = None  # (e.g. Set5's HR images)
    scale: Literal[2, 3, 4] = 4  # the up-scaling factor
    blur_sigma: Annotated[float, Field(ge=0, le=100)] = 1.0  # of the Gaussian before down-sampling, in HR pixels
    patch_size: SIDE = 64  # HR side of a training patch
    patches: COUNT = 256  # training patches, cut once from the training images (seeded)
    eval_size: SIDE | None = 256  # HR centre crop of each held-out image; null: all of it
    seed: SEED = 0  # where the patches are cut

    def inputs(self) -> list[str]:
        """Files the prepared data is made from (bundled photos are part of the installed packages)."""
        return [self.train_path, self.eval_path] if self.source == "folder" else []

    @model_validator(mode="after")
    def _source_needs(self):
        if self.source == "photos" and not (self.train_images and self.eval_images):
            raise ValueError("source 'photos' needs 'train_images' and 'eval_images' (names of bundled photos)")
        if self.source == "folder" and not (self.train_path and self.eval_path):
            raise ValueError("source 'folder' needs 'train_path' and 'eval_path' (folders of HR images)")
        for key in ("patch_size", "eval_size"):
            if getattr(self, key) is not None and getattr(self, key) % self.scale:
                raise ValueError(f"{key} ({getattr(self, key)}) must be a multiple of scale ({self.scale})")
        return self


class SRNet(Strict):
    model: str  # a name in kdlib.dense.registry.SR_MODELS
    args: dict[str, Any] = {}  # its constructor's keyword arguments (the scale comes from data.scale)
    epochs: COUNT


class SRDistill(Strict):
    """The student's KD terms beside L1 to the ground truth (seed 002, Eq. 5-7)."""
    feature_weight: Annotated[float, Field(ge=0, le=1e6)] = 1.0  # L2 between the body features (student via a 1x1 projector)
    perceptual_weight: Annotated[float, Field(ge=0, le=1e6)] = 1.0  # VGG-16 feature distance to the teacher's output
    perceptual_weights: Literal["auto", "imagenet", "random"] = "auto"  # auto: ImageNet if on disk, else random
    perceptual_layer: Literal["relu1_2", "relu2_2", "relu3_3", "relu4_3"] = "relu2_2"  # the VGG-16 features compared


class EdgeData(Strict):
    """Images with binary boundary maps (seed 002, Task 2.2)."""
    source: Literal["shapes", "bsds500"] = "shapes"
    path: str | None = None  # bsds500: the folder holding images/ and groundTruth/
    image_size: SIDE = 64  # square side, in pixels
    train_images: COUNT | None = None  # shapes: how many scenes
    test_images: COUNT | None = None  # shapes: how many held-out scenes
    train_splits: Annotated[list[str], Field(min_length=1)] = ["train"]  # bsds500
    eval_split: str = "val"  # bsds500: the held-out split
    agreement: Annotated[float, Field(gt=0, le=1)] = 0.5  # bsds500: share of annotators that must mark an edge
    seed: SEED = 0  # shapes: scene generator

    def inputs(self) -> list[str]:
        return [self.path] if self.source == "bsds500" else []

    @model_validator(mode="after")
    def _source_needs(self):
        if self.source == "shapes" and not (self.train_images and self.test_images):
            raise ValueError("source 'shapes' needs 'train_images' and 'test_images'")
        if self.source == "bsds500" and not self.path:
            raise ValueError("source 'bsds500' needs 'path' (the folder holding images/ and groundTruth/)")
        return self


class UNet(Strict):
    encoder: str  # a segmentation-models-pytorch encoder, e.g. resnet34, mobilenet_v2
    encoder_weights: str | None = None  # e.g. imagenet (needs the weights downloaded); null: from scratch
    decoder_channels: Annotated[list[Annotated[int, Field(gt=0, le=4096)]], Field(min_length=1, max_length=5)] = \
        [256, 128, 64, 32, 16]
    epochs: COUNT


class EdgeDistill(Strict):
    alpha: Annotated[float, Field(ge=0, le=1)] = 0.5  # (1 - alpha) weighted BCE + alpha MSE of sigmoid maps
    pos_weight: Annotated[float, Field(gt=0, le=1e6)] = 10.0  # of edge pixels in the BCE (seed 002, Eq. 8)


DENSE_ROLES = ("teacher", "scratch", "kd")  # the student without KD is `scratch`, the distilled one `kd`
DENSE_STUDENTS = DENSE_ROLES[1:]  # what is deployed (exported to ONNX)
# The experiment keys each node's result depends on: the data's, and those of the roles (kd: every key).
ROLE_FIELDS = {"data": ("task", "data"), "teacher": ("task", "data", "training", "teacher"),
               "scratch": ("task", "data", "training", "student")}


class DenseExperiment(Strict):
    """A teacher, a student trained without KD and the same student distilled from the teacher (DENSE_ROLES)."""

    def fields(self, role: str) -> tuple[str, ...]:
        """The experiment keys a role's result (or, for role `data`, the prepared data) depends on."""
        return ROLE_FIELDS.get(role, tuple(type(self).model_fields))

    def recipe(self, role: str) -> dict:
        return self.model_dump(mode="json", include=set(self.fields(role)))

    def net(self, role: str):
        return self.teacher if role == "teacher" else self.student


class SRExperiment(DenseExperiment):
    task: Literal["super_resolution"]
    data: SRData
    training: DenseTraining
    teacher: SRNet
    student: SRNet
    distill: SRDistill = SRDistill()


class EdgeExperiment(DenseExperiment):
    task: Literal["edges"]
    data: EdgeData
    training: DenseTraining
    teacher: UNet
    student: UNet
    distill: EdgeDistill = EdgeDistill()


TASKS = ("super_resolution", "edges")
