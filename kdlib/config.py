"""Load and validate params.yaml before any work starts.

Every problem becomes one KDError that names the offending key, e.g.
`params.yaml: runs.student.distill.alpha: must be between 0 and 1 (got 1.5)`.
"""
from __future__ import annotations

import difflib
import re
from pathlib import Path
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from kdlib.errors import KDError
from kdlib.models.registry import MODELS, PRETRAINED, STAGES

RUN_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetSpec(Strict):
    source: Literal["photo_shapes", "digits", "cifar10", "cifar100", "imagefolder"]
    path: str | None = None  # imagefolder root, or where CIFAR archives are (default data/raw)
    image_size: Annotated[int, Field(gt=0)] = 32
    train_per_class: Annotated[int, Field(gt=0)] | None = None  # photo_shapes only
    test_per_class: Annotated[int, Field(gt=0)] | None = None

    @model_validator(mode="after")
    def _source_needs(self):
        if self.source == "imagefolder" and not self.path:
            raise ValueError("source 'imagefolder' needs 'path' (a folder with train/ and val/ or test/)")
        if self.source == "photo_shapes" and not (self.train_per_class and self.test_per_class):
            raise ValueError("source 'photo_shapes' needs 'train_per_class' and 'test_per_class'")
        return self


class Optimizer(Strict):
    name: Literal["sgd", "adamw"] = "sgd"
    lr: Annotated[float, Field(gt=0)] = 0.05
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    weight_decay: Annotated[float, Field(ge=0)] = 5e-4
    nesterov: bool = False

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self):
        if self.nesterov and self.momentum == 0:
            raise ValueError("'nesterov: true' needs a momentum above 0")
        return self


class Schedule(Strict):
    # stagewise (StableKD only): within every StableKD stage a triangular warm-up and anneal from min_lr, the
    # amplitude halving stage by stage (the seed's Figure 7, CyclicLR triangular2 with one cycle per stage).
    name: Literal["cosine", "onecycle", "constant", "stagewise"] = "cosine"
    warmup_epochs: Annotated[float, Field(ge=0)] = 0  # linear warm-up before cosine
    min_lr: Annotated[float, Field(ge=0)] = 0.0  # cosine's floor, stagewise's base

    @model_validator(mode="after")
    def _keys_of_the_schedule(self):
        if self.warmup_epochs and self.name != "cosine":
            raise ValueError(f"warmup_epochs applies to schedule 'cosine' (schedule is '{self.name}'; onecycle and "
                             "stagewise warm up by themselves)")
        if self.min_lr and self.name not in ("cosine", "stagewise"):
            raise ValueError(f"min_lr applies to schedules 'cosine' and 'stagewise' (schedule is '{self.name}')")
        return self


class ColorJitter(Strict):
    brightness: Annotated[float, Field(ge=0)] = 0.0
    contrast: Annotated[float, Field(ge=0)] = 0.0
    saturation: Annotated[float, Field(ge=0)] = 0.0
    hue: Annotated[float, Field(ge=0, le=0.5)] = 0.0


class RandomErasing(Strict):
    p: Annotated[float, Field(ge=0, le=1)] = 0.25
    scale: tuple[Annotated[float, Field(gt=0, le=1)], Annotated[float, Field(gt=0, le=1)]] = (0.02, 0.2)

    @model_validator(mode="after")
    def _ordered(self):
        if self.scale[0] > self.scale[1]:
            raise ValueError(f"scale must be [low, high] (got {list(self.scale)})")
        return self


class Augment(Strict):
    """Per-image training augmentation (torchvision v2), in this order: crop, flip, AutoAugment, colour
    jitter, then normalisation, then random erasing."""
    crop_padding: Annotated[int, Field(ge=0)] = 4  # random crop after zero padding; 0 turns it off
    hflip: bool = True
    autoaugment: bool = False  # torchvision's CIFAR-10 AutoAugment policy
    color_jitter: ColorJitter | None = None
    random_erasing: RandomErasing | None = None
    # Loader processes that augment while the model trains (0: in the training process). Each draws from its
    # own seeded stream, so results are reproducible for a given count but differ between counts.
    workers: Annotated[int, Field(ge=0)] = 0


class Mix(Strict):
    """Per batch, Mixup or CutMix with equal chance (torchvision v2); labels mix by lambda."""
    mixup_alpha: Annotated[float, Field(gt=0)] = 0.8
    cutmix_alpha: Annotated[float, Field(gt=0)] = 1.0


METHOD_KEYS = {  # the Distill keys each method reads, beyond method itself
    "logits": {"alpha", "schedule", "alpha_end", "temperature"},
    "logits_mse": {"alpha", "schedule", "alpha_end"},
    "feature": {"alpha", "schedule", "alpha_end"},
    "at": {"beta"},
    "dkd": {"beta", "temperature"},
    "kd_mse": {"kl_weight", "temperature"},
    "stablekd": {"kl_weight", "temperature", "blocks", "recompositions", "stage_epochs"},
}
DEFAULT_BETA = {"at": 1000.0, "dkd": 8.0}  # AT's CIFAR beta; DKD's CIFAR weight of the non-target term
DEFAULT_TEMPERATURE = {"logits": 4.0, "dkd": 4.0, "kd_mse": 1.0, "stablekd": 1.0}  # seed 003 uses T = 1 throughout
PAIRED_STAGES = ("at", "kd_mse", "stablekd")  # methods that pair the student's stages with the teacher's


class Distill(Strict):
    # logits: Hinton's KL at temperature T (times T^2); logits_mse: MSE between logits;
    # feature: L2 between the last conv feature maps, through a learned 1x1 projector if shapes differ;
    # at: attention transfer at every stage (Zagoruyko & Komodakis); dkd: decoupled KD (Zhao et al. 2022);
    # kd_mse: CE + kl_weight * KL + MSE at every stage output, end to end (seed 003's ablation);
    # stablekd: the same terms with the networks decomposed into blocks that learn from the teacher's
    # block inputs, recomposed pairwise stage by stage (seed 003).
    method: Literal["logits", "logits_mse", "feature", "at", "dkd", "kd_mse", "stablekd"] = "logits"
    alpha: Annotated[float, Field(ge=0, le=1)] = 0.9  # weight of the KD term; 1 - alpha weighs cross-entropy
    # Alpha per epoch: constant; linear from alpha to alpha_end; three_phase (seed 000): 1, 0.5, 0 by thirds.
    schedule: Literal["constant", "linear", "three_phase"] = "constant"
    alpha_end: Annotated[float, Field(ge=0, le=1)] | None = None
    temperature: Annotated[float, Field(gt=0)] | None = None  # default: 4, or 1 for kd_mse and stablekd
    beta: Annotated[float, Field(ge=0)] | None = None  # at: AT's beta (1000); dkd: the non-target weight (8)
    kl_weight: Annotated[float, Field(ge=0)] = 1.0  # lambda of seed 003's Eq. 8: CE + lambda KL + sum of MSEs
    blocks: Annotated[int, Field(ge=1)] | None = None  # StableKD's k; default: every stage one block, plus the head
    recompositions: Annotated[int, Field(ge=0)] = 2  # StableKD's n: stages 0..n, each a checkpoint
    # Epochs of each StableKD stage; default floor(e / (n + 1)) each, the rest to the last (the seed's e/3 split).
    stage_epochs: list[Annotated[int, Field(ge=1)]] | None = None

    @model_validator(mode="after")
    def _schedule_keys(self):
        # Keys given with a value other than their default (a dumped config re-validates).
        given = {f for f in self.model_fields_set - {"method"} if getattr(self, f) != type(self).model_fields[f].default}
        foreign = given - METHOD_KEYS[self.method]
        if foreign:
            raise ValueError(f"method '{self.method}' does not use {', '.join(sorted(foreign))} "
                             f"(it reads: {', '.join(sorted(METHOD_KEYS[self.method]))})")
        if self.schedule == "linear" and self.alpha_end is None:
            raise ValueError("schedule 'linear' needs 'alpha_end' (alpha at the last epoch)")
        if self.schedule != "linear" and self.alpha_end is not None:
            raise ValueError(f"'alpha_end' only applies to schedule 'linear' (schedule is '{self.schedule}')")
        if self.schedule == "three_phase" and "alpha" in self.model_fields_set:
            raise ValueError("schedule 'three_phase' fixes alpha at 1, 0.5, 0 by thirds of the epochs; remove 'alpha'")
        if self.stage_epochs is not None and len(self.stage_epochs) != self.recompositions + 1:
            raise ValueError(f"stage_epochs needs one entry per stage, recompositions + 1 = {self.recompositions + 1} "
                             f"(got {len(self.stage_epochs)})")
        return self

    @model_validator(mode="before")
    @classmethod
    def _method_defaults(cls, data):
        """beta and temperature default by method (before validation, so `Distill(...)` gets them too)."""
        method = data.get("method", "logits") if isinstance(data, dict) else None
        if isinstance(method, str):
            for key, table in (("beta", DEFAULT_BETA), ("temperature", DEFAULT_TEMPERATURE)):
                if data.get(key) is None and method in table:
                    data = {**data, key: table[method]}
        return data

    def epochs_per_stage(self, epochs: int) -> list[int]:
        """StableKD's e_0..e_n: as given, or floor(e / (n + 1)) for each stage and the rest for the last."""
        if self.stage_epochs is not None:
            return list(self.stage_epochs)
        share = epochs // (self.recompositions + 1)
        return [share] * self.recompositions + [epochs - share * self.recompositions]


class Run(Strict):
    model: str
    dataset: str
    width: Annotated[float, Field(gt=0)] = 1.0
    block_type: Literal["base", "acb"] = "base"  # acb: every eligible KxK conv becomes an ACB, fused for inference
    pretrained: bool = False  # start from published ImageNet weights (torchvision models only)
    epochs: Annotated[int, Field(gt=0)]
    batch_size: Annotated[int, Field(gt=0)] = 128
    seed: Annotated[int, Field(ge=0)] = 0
    # Replicates: one run per seed, named <run>_s<seed>, each a node of its own; tables give mean ± std.
    seeds: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)] | None = None
    optimizer: Optimizer = Optimizer()
    schedule: Schedule = Schedule()
    augment: Augment = Augment()
    mix: Mix | None = None
    label_smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.0  # on the hard (label) loss
    # Train on this share of every class of the training split, the same images for every run with this seed.
    train_fraction: Annotated[float, Field(gt=0, le=1)] = 1.0
    amp: Literal["none", "bf16", "fp16"] = "none"  # mixed precision: bf16 on CPU or CUDA, fp16 on CUDA only
    teacher: str | None = None
    distill: Distill | None = None

    @field_validator("model")
    @classmethod
    def _known_model(cls, v):
        if v not in MODELS:
            raise ValueError(f"unknown model '{v}'{_suggest(v, MODELS)} (known: {', '.join(MODELS)})")
        return v

    @model_validator(mode="after")
    def _weights_exist(self):
        if self.pretrained and self.model not in PRETRAINED:
            raise ValueError(f"pretrained: model '{self.model}' has no published weights "
                             f"(pretrained models: {', '.join(sorted(PRETRAINED))})")
        if self.pretrained and self.block_type == "acb":
            raise ValueError("pretrained weights do not carry over into ACB branches; use block_type 'base'")
        return self

    @field_validator("seeds")
    @classmethod
    def _each_seed_once(cls, v):
        if v is not None and len(set(v)) != len(v):
            raise ValueError(f"each seed once (got {v})")
        return v

    @model_validator(mode="after")
    def _one_seed_setting(self):
        if self.seeds is not None and "seed" in self.model_fields_set:
            raise ValueError("give 'seed' (one run) or 'seeds' (one run per seed), not both")
        return self

    @model_validator(mode="after")
    def _three_phases_need_three_epochs(self):
        if self.distill is not None and self.distill.schedule == "three_phase" and self.epochs < 3:
            raise ValueError(f"distill.schedule 'three_phase' needs at least 3 epochs, one per phase "
                             f"(epochs is {self.epochs})")
        return self

    def stages_are_independent(self) -> bool:
        """Whether a StableKD stage's work ignores the later stages: their epochs are given one by one (not split
        from a total) and the learning rate restarts every stage (not one curve over all epochs)."""
        return self.distill is not None and self.distill.stage_epochs is not None and \
            self.schedule.name in ("stagewise", "constant")

    def recipe(self, stage: int | None = None) -> dict:
        """The resolved run as JSON data; for a training stage of a StableKD run whose stages are independent,
        without the later stages' epochs (what that stage's result depends on)."""
        data = self.model_dump(mode="json")
        if stage is not None and self.stages_are_independent():
            del data["epochs"]
            data["distill"]["stage_epochs"] = data["distill"]["stage_epochs"][:stage + 1]
        return data

    def stage_epochs(self) -> list[int]:
        """Epochs of each training stage: a StableKD run's e_0..e_n (each stage a checkpoint), else all in one."""
        if self.distill is not None and self.distill.method == "stablekd":
            return self.distill.epochs_per_stage(self.epochs)
        return [self.epochs]

    @model_validator(mode="after")
    def _stablekd_stages(self):
        stablekd = self.distill is not None and self.distill.method == "stablekd"
        if self.schedule.name == "stagewise" and not stablekd:
            raise ValueError("schedule 'stagewise' follows StableKD's stages; it needs distill.method 'stablekd'")
        if self.mix is not None and self.distill is not None and self.distill.method == "dkd":
            raise ValueError("distill.method 'dkd' splits target and non-target classes; it needs unmixed labels "
                             "(remove 'mix')")
        if stablekd:
            stages = self.distill.recompositions + 1
            if self.distill.stage_epochs is not None and sum(self.distill.stage_epochs) != self.epochs:
                raise ValueError(f"epochs ({self.epochs}) must be the sum of distill.stage_epochs "
                                 f"{self.distill.stage_epochs}: set it to {sum(self.distill.stage_epochs)}")
            if self.epochs < stages:
                raise ValueError(f"StableKD with {self.distill.recompositions} recompositions trains {stages} stages "
                                 f"of at least one epoch each; epochs is {self.epochs}")
        return self

    @model_validator(mode="after")
    def _floor_below_peak(self):
        if self.schedule.min_lr > self.optimizer.lr:
            raise ValueError(f"schedule.min_lr ({self.schedule.min_lr}) is above optimizer.lr ({self.optimizer.lr})")
        return self

    @model_validator(mode="after")
    def _distill_needs_teacher(self):
        if self.distill is not None and self.teacher is None:
            raise ValueError("'distill' is set but 'teacher' is not: name the run to distill from")
        if self.teacher is not None and self.distill is None:
            return self.model_copy(update={"distill": Distill()})
        return self


class Seed001Report(Strict):
    v1: str  # the version-1 student (its teacher heads the tables)
    v2: str  # the version-2 student

    @model_validator(mode="after")
    def _two_runs(self):
        if self.v1 == self.v2:
            raise ValueError("v1 and v2 name the same run")
        return self


class Seed002Report(Strict):
    chain: str  # Task 1: the chain's first two generations and gen 2's scratch baseline; Task 3: every generation


class Seed003Report(Strict):
    # The distilled runs of the StableKD study; each one's scheme (from its distill method), epoch budget and
    # train_fraction place it in the tables.
    runs: Annotated[list[str], Field(min_length=1)]


class Report(Strict):
    """Which runs play which role in the seed 001-003 tables (seed 000's roles are read from the recipes)."""
    seed001: Seed001Report | None = None
    seed002: Seed002Report | None = None
    seed003: Seed003Report | None = None


class Export(Strict):
    """How stages/export.py times every run's inference form (eager PyTorch and onnxruntime, median ms per batch).
    Parity is not a setting: logits within 1e-4 and the same top-1 on every test image, or the stage fails."""
    latency_batches: Annotated[list[Annotated[int, Field(gt=0)]], Field(min_length=1)] = [1, 64]
    latency_seconds: Annotated[float, Field(gt=0)] = 1.0  # timing budget per batch size, all candidates together


# --- Seed 002's dense tasks (Task 2): each experiment trains a teacher, a student without KD and the same student
# with KD, one DAG node each. Model names, their args and photo names are checked against kdlib.dense (see
# kdlib.dense.check), so that this module, which every stage imports, does not import the dense networks.

class DenseTraining(Strict):
    """What the three runs of a dense experiment share: Adam at `lr`, batches, the seed."""
    batch_size: Annotated[int, Field(gt=0)]
    lr: Annotated[float, Field(gt=0)]
    seed: Annotated[int, Field(ge=0)] = 0
    plateau_patience: Annotated[int, Field(ge=0)] | None = None  # ReduceLROnPlateau on the held-out loss; null: constant


class SRData(Strict):
    """HR images, degraded by Gaussian blur then bicubic down-sampling by `scale` (seed 002, Task 2.1)."""
    source: Literal["photos", "folder"] = "photos"
    train_images: list[str] | None = None  # photos: names of photos scikit-image and scikit-learn ship
    eval_images: list[str] | None = None  # held out for evaluation
    train_path: str | None = None  # folder: every image file in it (e.g. DIV2K_train_HR)
    eval_path: str | None = None  # (e.g. Set5's HR images)
    scale: Literal[2, 3, 4] = 4
    blur_sigma: Annotated[float, Field(ge=0)] = 1.0  # of the Gaussian before down-sampling, in HR pixels
    patch_size: Annotated[int, Field(gt=0)] = 64  # HR side of a training patch
    patches: Annotated[int, Field(gt=0)] = 256  # training patches, cut once from the training images (seeded)
    eval_size: Annotated[int, Field(gt=0)] | None = 256  # HR centre crop of each held-out image; null: all of it
    seed: Annotated[int, Field(ge=0)] = 0  # where the patches are cut

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
    model: str  # a name in kdlib.dense.sr_models.SR_MODELS
    args: dict[str, Any] = {}  # its constructor's keyword arguments (the scale comes from data.scale)
    epochs: Annotated[int, Field(gt=0)]


class SRDistill(Strict):
    """The student's KD terms beside L1 to the ground truth (seed 002, Eq. 5-7)."""
    feature_weight: Annotated[float, Field(ge=0)] = 1.0  # L2 between the body features (student via a 1x1 projector)
    perceptual_weight: Annotated[float, Field(ge=0)] = 1.0  # VGG-16 feature distance to the teacher's output
    perceptual_weights: Literal["auto", "imagenet", "random"] = "auto"  # auto: ImageNet if on disk, else random
    perceptual_layer: Literal["relu1_2", "relu2_2", "relu3_3", "relu4_3"] = "relu2_2"


class EdgeData(Strict):
    """Images with binary boundary maps (seed 002, Task 2.2)."""
    source: Literal["shapes", "bsds500"] = "shapes"
    path: str | None = None  # bsds500: the folder holding images/ and groundTruth/
    image_size: Annotated[int, Field(gt=0)] = 64
    train_images: Annotated[int, Field(gt=0)] | None = None  # shapes: how many scenes
    test_images: Annotated[int, Field(gt=0)] | None = None
    train_splits: Annotated[list[str], Field(min_length=1)] = ["train"]  # bsds500
    eval_split: str = "val"
    agreement: Annotated[float, Field(gt=0, le=1)] = 0.5  # bsds500: share of annotators that must mark an edge
    seed: Annotated[int, Field(ge=0)] = 0  # shapes: scene generator

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
    decoder_channels: Annotated[list[Annotated[int, Field(gt=0)]], Field(min_length=1, max_length=5)] = \
        [256, 128, 64, 32, 16]
    epochs: Annotated[int, Field(gt=0)]


class EdgeDistill(Strict):
    alpha: Annotated[float, Field(ge=0, le=1)] = 0.5  # (1 - alpha) weighted BCE + alpha MSE of sigmoid maps
    pos_weight: Annotated[float, Field(gt=0)] = 10.0  # of edge pixels in the BCE (seed 002, Eq. 8)


DENSE_ROLES = ("teacher", "scratch", "kd")  # the student without KD is `scratch`, the distilled one `kd`
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


@dataclass(frozen=True)
class Source:
    """Where a run comes from in the params file: the `runs` entry whose unset keys come from `defaults`, the
    keys that define it, and the run keys it does not use (a chain's scratch baseline drops teacher and distill)."""
    entry: str
    keys: tuple[str, ...]
    unused: frozenset[str] = frozenset()


class Params(Strict):
    profile: str = "custom"
    description: str = ""
    datasets: dict[str, DatasetSpec]
    runs: dict[str, Run]  # after validation: every run to train, one per seed, with chain teachers filled in
    # chain name -> [teacher, gen 2, gen 3, ...]: each generation distils from the one before it (or from an
    # earlier member it names as teacher), and each student gets a scratch-trained baseline <student>_scratch.
    chains: dict[str, Annotated[list[str], Field(min_length=2)]] = {}
    report: Report = Report()
    export: Export = Export()
    dense: dict[str, Annotated[SRExperiment | EdgeExperiment, Field(discriminator="task")]] = {}
    _written: dict[str, Run] = PrivateAttr(default_factory=dict)
    _replicas: dict[str, dict[int, str]] = PrivateAttr(default_factory=dict)
    _sources: dict[str, Source] = PrivateAttr(default_factory=dict)

    @property
    def written(self) -> dict[str, Run]:
        """The runs as params.yaml gives them (plus chain baselines), before one-per-seed expansion;
        a teacher here names a written run."""
        return self._written

    @property
    def replicas(self) -> dict[str, dict[int, str]]:
        """Written run -> {seed: the run trained with that seed}."""
        return self._replicas

    @property
    def sources(self) -> dict[str, Source]:
        """Run -> where the params file defines it."""
        return self._sources


_ALL_KEYS = {f for m in (Params, DatasetSpec, Run, Optimizer, Schedule, Augment, ColorJitter, RandomErasing, Mix,
                         Distill, Report, Export, Seed001Report, Seed002Report, Seed003Report, DenseTraining, SRData, SRNet, SRDistill,
                         EdgeData, UNet, EdgeDistill, SRExperiment, EdgeExperiment) for f in m.model_fields}


def _suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML loader that rejects a key given twice in one mapping (PyYAML silently keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` merges a mapping in; the entry's own keys override it
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise KDError(f"duplicate key '{key}' at line {key_node.start_mark.line + 1}: "
                              "every run and dataset name must be unique")
            seen.add(key)
        return super().construct_mapping(node, deep)


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for k, v in override.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def leaves(tree: dict, prefix: tuple = ()) -> list[tuple]:
    """Key paths of every leaf of a nested mapping (an empty mapping counts as a leaf)."""
    out = []
    for key, value in tree.items():
        out += leaves(value, prefix + (key,)) if isinstance(value, dict) and value else [prefix + (key,)]
    return out


def sets(raw_run: dict, path) -> bool:
    """Whether a run's own params-file entry gives the key at `path` (rather than inheriting it)."""
    node = raw_run
    for part in path:
        if isinstance(node, list) and str(part).isdigit() and int(part) < len(node):
            node = node[int(part)]  # an item of a list, e.g. seeds.0
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return False
    return True


def _describe(err: dict, raw_run: dict | None, run_name: str | None) -> str:
    """Turn one pydantic error into 'key.path: message', naming `defaults` when the key came from there."""
    loc = [str(p) for p in err["loc"]]
    if run_name is not None:
        # Keys the run itself does not give came from `defaults` (or are missing altogether).
        prefix = ["runs", run_name] if sets(raw_run, loc) or err["type"] == "missing" else ["defaults"]
        loc = prefix + loc
    if loc[:1] == ["dense"] and len(loc) > 2 and loc[2] in TASKS:
        del loc[2]  # the task tag pydantic adds for the tagged union
    if err["type"] == "extra_forbidden":
        return f"{'.'.join(loc)}: unknown key{_suggest(loc[-1], _ALL_KEYS)}"
    msg = err["msg"].removeprefix("Value error, ")
    return f"{'.'.join(loc)}: {msg}"


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read, merge `defaults` into every run, validate, and check cross-references."""
    path = Path(path)
    if not path.is_file():
        raise KDError(f"{path}: no such params file")
    try:
        raw = yaml.load(path.read_text(), Loader=_UniqueKeyLoader) or {}
    except KDError as e:
        raise KDError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        raise KDError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise KDError(f"{path}: the top level must be a mapping of keys")
    return validate(raw, source=str(path))


def validate(raw: dict, source: str = "params.yaml") -> Params:
    raw = {key: value for key, value in raw.items() if value is not None or key == "runs"}  # blank = absent
    defaults = raw.pop("defaults", None) or {}
    raw_runs = raw.get("runs") or {}
    raw_chains = raw.get("chains") or {}
    shapes = [(key, value) for key, value in (("defaults", defaults), ("runs", raw_runs), ("chains", raw_chains),
                                              ("datasets", raw.get("datasets") or {}))
              if not isinstance(value, dict)]
    shapes += [(f"runs.{n}", r) for n, r in (raw_runs.items() if isinstance(raw_runs, dict) else ())
               if r is not None and not isinstance(r, dict)]
    if shapes:
        raise KDError(f"{source}: " + "; ".join(f"{k}: must be a mapping of keys, not {type(v).__name__}"
                                                 for k, v in shapes))
    problems = []
    for section in ("runs", "datasets", "chains", "dense"):
        for name in raw.get(section) or {}:
            if not RUN_NAME.match(str(name)):
                problems.append(f"{section}.{name}: names must start with a letter and use only letters, digits and _")
    if "seed" in defaults and "seeds" in defaults:
        problems.append("defaults: give 'seed' (one run) or 'seeds' (one run per seed), not both")
        defaults = {k: v for k, v in defaults.items() if k != "seed"}  # reported once here, not once per run
    chain_teachers, chain_problems = _chain_teachers(raw_chains, raw_runs)
    problems += chain_problems
    runs, sources = {}, {}
    for name, run in raw_runs.items():
        merged = _merge(defaults, run or {})
        for own, inherited in (("seeds", "seed"), ("seed", "seeds")):  # the run's own choice wins over defaults'
            if own in (run or {}) and inherited not in (run or {}):
                merged.pop(inherited, None)
        if name in chain_teachers:
            merged["teacher"] = chain_teachers[name][1]
        distill = merged.get("distill")
        stage_epochs = distill.get("stage_epochs") if isinstance(distill, dict) else None
        staged = isinstance(stage_epochs, list) and all(isinstance(e, int) for e in stage_epochs)
        if staged and "epochs" not in (run or {}):
            merged["epochs"] = sum(stage_epochs)  # a StableKD run's epochs are its stages' (the default's give way)
        try:
            runs[name] = Run.model_validate(merged)
        except ValidationError as e:
            problems += [_describe(err, run or {}, name) for err in e.errors()]
        # Given stage by stage, the epochs depend on no `epochs` key.
        sources[name] = _source(name, run or {}, replicated="seeds" in merged, unused={"epochs"} if staged else set())
    try:
        params = Params.model_validate({**raw, "runs": {}, "chains": raw_chains})
    except ValidationError as e:
        problems += [_describe(err, None, None) for err in e.errors()]
        params = None
    if not problems and params is not None:
        problems += _add_scratch_baselines(params.chains, runs, sources, raw_runs)
    if not problems and params is not None:
        problems += _cross_check(params, runs)
    if not problems and params is not None:
        expanded, replicas, expand_problems = _one_run_per_seed(runs)
        problems += expand_problems
    problems = list(dict.fromkeys(problems))  # a bad default shows once, not once per run
    if problems:
        raise KDError(f"{source}: " + (problems[0] if len(problems) == 1 else "\n  " + "\n  ".join(problems)))
    params = params.model_copy(update={"runs": expanded})
    params._written, params._replicas = runs, replicas
    params._sources = {member: sources[name] for name, seeds in replicas.items() for member in seeds.values()}
    return params


def _chain_teachers(chains: dict, raw_runs: dict) -> tuple[dict[str, tuple[str, str]], list[str]]:
    """Student -> (its chain, its teacher) for every chain generation after the first. A student that names its
    own teacher keeps it, which must then be an earlier member of its chain."""
    out, problems = {}, []
    for chain, members in chains.items():
        if not isinstance(members, list) or len(members) < 2:
            continue  # the Params model reports the shape
        for i, name in enumerate(members):
            if not isinstance(name, str):
                continue  # the Params model reports it
            if name not in raw_runs:
                problems.append(f"chains.{chain}: '{name}' names no run{_suggest(str(name), raw_runs)}")
                continue
            if name in members[:i]:
                problems.append(f"chains.{chain}: '{name}' appears twice")
                continue
            if i == 0:
                continue
            own = (raw_runs[name] or {}).get("teacher")
            if own is not None and own not in members[:i]:
                problems.append(f"runs.{name}.teacher: '{own}' is not an earlier generation of chain '{chain}' "
                                f"({', '.join(members[:i])})")
            if name in out:
                problems.append(f"chains.{chain}: '{name}' is already a student in chain '{out[name][0]}'")
            out[name] = (chain, own or members[i - 1])
    return out, problems


def _add_scratch_baselines(chains: dict[str, list[str]], runs: dict[str, Run], sources: dict[str, Source],
                           raw_runs: dict) -> list[str]:
    """Every chain student gets a scratch-trained run of its recipe, unless one is already among the runs."""
    problems = []
    for chain, members in chains.items():
        for student in members[1:]:
            if scratch_baseline(runs, student):
                continue
            scratch = runs[student].model_copy(update={"teacher": None, "distill": None})
            name = f"{student}_scratch"
            if name in runs:
                problems.append(f"runs.{name}: chain '{chain}' needs this name for the scratch baseline of "
                                f"'{student}', and this run has another recipe; rename it")
                continue
            runs[name] = scratch
            sources[name] = _source(student, raw_runs[student] or {}, replicated=scratch.seeds is not None,
                                    unused={"teacher", "distill"})
    return problems


def scratch_baseline(runs: dict[str, Run], student: str) -> str | None:
    """The run trained without a teacher on the student's exact recipe, if there is one."""
    recipe = runs[student].model_dump(exclude={"teacher", "distill"})
    return next((name for name, run in runs.items()
                 if run.teacher is None and run.model_dump(exclude={"teacher", "distill"}) == recipe), None)


def _source(entry: str, raw_run: dict, replicated: bool, unused: set = frozenset()) -> Source:
    """The params keys behind a run: its `runs` entry, or that entry key by key where part of it does not count
    (a scratch baseline ignores its student's teacher and distill; a run trained once per seed ignores its list
    of seeds, so adding a seed re-runs none of the others). The teacher link needs no key: it is the teacher's
    checkpoint, a stage input. No run depends on the `seed` or `seeds` default it overrides."""
    if not replicated and not unused:
        return Source(entry, (f"runs.{entry}",), frozenset({"seeds"}))
    unused = frozenset(unused) | ({"seed", "seeds"} if replicated else {"seeds"})
    return Source(entry, tuple(".".join(("runs", entry) + path) for path in leaves(raw_run) if path[0] not in unused),
                  unused)


def _one_run_per_seed(written: dict[str, Run]) -> tuple[dict[str, Run], dict[str, dict[int, str]], list[str]]:
    """Expand every run with `seeds` into one run per seed; a student's seed-k run learns from its teacher's."""
    replicas = {name: ({s: f"{name}_s{s}" for s in run.seeds} if run.seeds else {run.seed: name})
                for name, run in written.items()}
    runs, problems = {}, []
    for name, run in written.items():
        for seed, member in replicas[name].items():
            teacher = None
            if run.teacher is not None:
                taught = replicas[run.teacher]
                if written[run.teacher].seeds is None:
                    teacher = next(iter(taught.values()))
                elif run.seeds is not None and seed in taught:
                    teacher = taught[seed]
                else:
                    problems.append(f"runs.{name}.seeds: teacher '{run.teacher}' runs seeds {list(taught)}; give "
                                    f"'{name}' seeds from those, so each seed learns from its own teacher")
                    break
            if member != name and member in written:
                problems.append(f"runs.{member}: the name is taken by seed {seed} of '{name}'; rename it")
            runs[member] = run.model_copy(update={"seed": seed, "seeds": None, "teacher": teacher})
    return runs, replicas, problems


def _cross_check(params: Params, runs: dict[str, Run]) -> list[str]:
    problems = []
    if not runs:
        problems.append("runs: no runs defined")
    for name, run in runs.items():
        if run.dataset not in params.datasets:
            problems.append(f"runs.{name}.dataset: unknown dataset '{run.dataset}'"
                            f"{_suggest(run.dataset, params.datasets)} (defined: {', '.join(params.datasets)})")
        if run.teacher is None:
            continue
        teacher = runs.get(run.teacher)
        if teacher is None:
            problems.append(f"runs.{name}.teacher: '{run.teacher}' names no run{_suggest(run.teacher, runs)}")
        elif teacher.dataset != run.dataset:
            problems.append(f"runs.{name}.teacher: '{run.teacher}' trains on '{teacher.dataset}', "
                            f"but '{name}' on '{run.dataset}'")
    problems += _report_roles(params.report, params.chains, runs)
    problems += _blockwise_pairs(runs)
    for exp in params.dense:  # their stages would share a name with the experiment's
        problems += [f"runs.{n}: the name is taken by dense experiment '{exp}'; rename the run"
                     for n in (f"dense_{exp}_{role}" for role in DENSE_ROLES) if n in runs]
        if f"dense_{exp}" in params.datasets:
            problems.append(f"datasets.dense_{exp}: the name is taken by dense experiment '{exp}'; rename the dataset")
    if not problems:
        problems += _cycles(runs)
    return problems


def _report_roles(report: Report, chains: dict, runs: dict[str, Run]) -> list[str]:
    problems = []
    if report.seed001 is not None:
        for version in ("v1", "v2"):
            name = getattr(report.seed001, version)
            if name not in runs:
                problems.append(f"report.seed001.{version}: '{name}' names no run{_suggest(name, runs)}")
            elif runs[name].teacher is None:
                problems.append(f"report.seed001.{version}: '{name}' has no teacher; name a distilled run")
    if report.seed003 is not None:
        for name in report.seed003.runs:
            if name not in runs:
                problems.append(f"report.seed003.runs: '{name}' names no run{_suggest(name, runs)}")
            elif runs[name].teacher is None:
                problems.append(f"report.seed003.runs: '{name}' has no teacher; name a distilled run")
    if report.seed002 is not None and report.seed002.chain not in chains:
        problems.append(f"report.seed002.chain: '{report.seed002.chain}' names no chain"
                        f"{_suggest(report.seed002.chain, chains)}")
    return problems


def _blockwise_pairs(runs: dict[str, Run]) -> list[str]:
    """Methods that pair stage with stage need as many stages in both networks, and StableKD's k at most
    stages + 1 (the head is a block)."""
    problems = []
    for name, run in runs.items():
        if run.teacher not in runs or run.distill.method not in PAIRED_STAGES:
            continue
        mine, theirs = STAGES[run.model], STAGES[runs[run.teacher].model]
        if mine != theirs:
            problems.append(f"runs.{name}.distill.method: '{run.distill.method}' pairs the student's stages with the "
                            f"teacher's, but '{run.model}' has {mine} and '{runs[run.teacher].model}' {theirs}")
        elif run.distill.blocks is not None and run.distill.blocks > mine + 1:
            problems.append(f"runs.{name}.distill.blocks: at most {mine + 1} for '{run.model}' (its {mine} stages "
                            f"and the head; got {run.distill.blocks})")
    return problems


def _cycles(runs: dict[str, Run]) -> list[str]:
    for start in runs:
        chain, node = [start], runs[start].teacher
        while node is not None:
            if node in chain:
                loop = chain[chain.index(node):] + [node]
                return [f"runs.{start}.teacher: teacher chain has a cycle: {' -> '.join(loop)}"]
            chain.append(node)
            node = runs[node].teacher
    return []


def ancestors(params: Params, name: str) -> list[str]:
    """Teachers of a run, nearest first."""
    out, node = [], params.runs[name].teacher
    while node is not None:
        out.append(node)
        node = params.runs[node].teacher
    return out
