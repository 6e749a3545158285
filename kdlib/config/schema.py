"""The schema of params.yaml's runs, datasets, report and export: what each key may hold and its default.

Every field default is a plain literal in the class body. The KD methods, their keys and their per-method
defaults come from the table in kdlib.distill.methods.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kdlib.config.suggest import _suggest
from kdlib.distill.methods import METHODS
from kdlib.distill.stage_plan import stage_epochs
from kdlib.models.registry import MODELS, PRETRAINED


class Strict(BaseModel):
    """Unknown keys refused; no conversions (`epochs: true` or `epochs: 2.5` is not an epoch count, `lr: "0.1"`
    not a rate); numbers finite (`.inf` and `.nan` are refused)."""
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


# Upper bounds that keep a typo (an extra zero or three) from reaching the trainer as an allocation it cannot make.
SEED = Annotated[int, Field(ge=0, lt=2**32)]  # numpy's seed range
COUNT = Annotated[int, Field(gt=0, le=1_000_000)]  # epochs, images per batch, patches
SIDE = Annotated[int, Field(gt=0, le=4096)]  # image sides, in pixels


class DatasetSpec(Strict):
    # photo_shapes and digits ship with installed packages; cifar10/100 via torchvision; imagefolder: your own
    source: Literal["photo_shapes", "digits", "cifar10", "cifar100", "imagefolder"]
    path: str | None = None  # imagefolder root, or where CIFAR archives are (default data/raw)
    image_size: SIDE = 32  # square side the images are resized to, in pixels
    train_per_class: COUNT | None = None  # photo_shapes only: images drawn per class
    test_per_class: COUNT | None = None  # photo_shapes only

    @model_validator(mode="after")
    def _source_needs(self):
        if self.source == "imagefolder" and not self.path:
            raise ValueError("source 'imagefolder' needs 'path' (a folder with train/ and val/ or test/)")
        if self.source == "photo_shapes" and not (self.train_per_class and self.test_per_class):
            raise ValueError("source 'photo_shapes' needs 'train_per_class' and 'test_per_class'")
        return self


class Optimizer(Strict):
    name: Literal["sgd", "adamw"] = "sgd"
    lr: Annotated[float, Field(gt=0, le=10)] = 0.05  # the peak learning rate the schedule starts from
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9  # sgd only
    weight_decay: Annotated[float, Field(ge=0, le=1)] = 5e-4
    nesterov: bool = False  # sgd only

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self):
        if self.nesterov and self.momentum == 0:
            raise ValueError("'nesterov: true' needs a momentum above 0")
        return self


class Schedule(Strict):
    # stagewise (StableKD only): within every StableKD stage a triangular warm-up and anneal from min_lr, the
    # amplitude halving stage by stage (the seed's Figure 7, CyclicLR triangular2 with one cycle per stage).
    name: Literal["cosine", "onecycle", "constant", "stagewise"] = "cosine"
    warmup_epochs: Annotated[float, Field(ge=0, le=1_000_000)] = 0  # linear warm-up before cosine
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
    brightness: Annotated[float, Field(ge=0, le=1)] = 0.0  # each: the jitter's range (0: off), as in torchvision
    contrast: Annotated[float, Field(ge=0, le=1)] = 0.0
    saturation: Annotated[float, Field(ge=0, le=1)] = 0.0
    hue: Annotated[float, Field(ge=0, le=0.5)] = 0.0


class RandomErasing(Strict):
    p: Annotated[float, Field(ge=0, le=1)] = 0.25  # chance an image gets a rectangle erased
    # [low, high] share of the image the rectangle covers
    scale: Annotated[list[Annotated[float, Field(gt=0, le=1)]], Field(min_length=2, max_length=2)] = [0.02, 0.2]

    @model_validator(mode="after")
    def _ordered(self):
        if self.scale[0] > self.scale[1]:
            raise ValueError(f"scale must be [low, high] (got {self.scale})")
        return self


class Augment(Strict):
    """Per-image training augmentation (torchvision v2), in this order: crop, flip, AutoAugment, colour
    jitter, then normalisation, then random erasing."""
    crop_padding: Annotated[int, Field(ge=0, le=4096)] = 4  # random crop after zero padding; 0 turns it off
    hflip: bool = True  # random horizontal flip
    autoaugment: bool = False  # torchvision's CIFAR-10 AutoAugment policy
    color_jitter: ColorJitter | None = None
    random_erasing: RandomErasing | None = None
    # Loader processes that augment while the model trains (0: in the training process). Each draws from its
    # own seeded stream, so results are reproducible for a given count but differ between counts.
    workers: Annotated[int, Field(ge=0, le=256)] = 0


class Mix(Strict):
    """Per batch, Mixup or CutMix with equal chance (torchvision v2); labels mix by lambda."""
    mixup_alpha: Annotated[float, Field(gt=0, le=100)] = 0.8  # Beta(alpha, alpha) draws lambda
    cutmix_alpha: Annotated[float, Field(gt=0, le=100)] = 1.0


class Distill(Strict):
    # The KD method, a row of kdlib.distill.methods.METHODS (what each does is told there): logits, logits_mse,
    # feature, at, dkd, st, nst, reviewkd, kd_mse, stablekd. Its row says which of the keys below it reads and
    # their defaults.
    method: str = "logits"
    alpha: Annotated[float, Field(ge=0, le=1)] = 0.9  # weight of the KD term; 1 - alpha weighs cross-entropy
    # Alpha per epoch: constant; linear from alpha to alpha_end; three_phase (seed 000): 1, 0.5, 0 by thirds.
    schedule: Literal["constant", "linear", "three_phase"] = "constant"
    alpha_end: Annotated[float, Field(ge=0, le=1)] | None = None  # the last epoch's alpha, schedule linear only
    temperature: Annotated[float, Field(gt=0, le=1000)] | None = None  # default: 4, or 1 for kd_mse and stablekd
    # The method's own weight (default: its row's): at 1000, dkd 8 (non-target term), st 10 (gradients), nst 50,
    # reviewkd 1.
    beta: Annotated[float, Field(ge=0, le=1e6)] | None = None
    kl_weight: Annotated[float, Field(ge=0, le=1e6)] = 1.0  # lambda of seed 003's Eq. 8: CE + lambda KL + sum of MSEs
    blocks: Annotated[int, Field(ge=1, le=1000)] | None = None  # StableKD's k; default: every stage one block, plus the head
    recompositions: Annotated[int, Field(ge=0, le=1000)] = 2  # StableKD's n: stages 0..n, each a checkpoint
    # Epochs of each StableKD stage; default floor(e / (n + 1)) each, the rest to the last (the seed's e/3 split).
    stage_epochs: list[COUNT] | None = None

    @field_validator("method", mode="before")
    @classmethod
    def _known_method(cls, v):
        """A row of the methods table (worded as pydantic words a Literal's error)."""
        if isinstance(v, str) and v in METHODS:
            return v
        known = [f"'{name}'" for name in METHODS]
        if len(known) > 1:
            known = [", ".join(known[:-1]), known[-1]]
        raise ValueError(f"Input should be {' or '.join(known)}")

    @model_validator(mode="after")
    def _schedule_keys(self):
        # Keys given with a value other than their default (a dumped config re-validates).
        given = {f for f in self.model_fields_set - {"method"} if getattr(self, f) != type(self).model_fields[f].default}
        reads = set(METHODS[self.method]["keys"])
        foreign = given - reads
        if foreign:
            raise ValueError(f"method '{self.method}' does not use {', '.join(sorted(foreign))} "
                             f"(it reads: {', '.join(sorted(reads))})")
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
        """Keys that default by method, e.g. beta and temperature (before validation, so `Distill(...)` gets them
        too): the method's row of the table gives their values."""
        method = data.get("method", "logits") if isinstance(data, dict) else None
        if isinstance(method, str) and method in METHODS:
            for key, value in METHODS[method]["defaults"].items():
                if data.get(key) is None:
                    data = {**data, key: value}
        return data

class Evaluation(Strict):
    """How training tests the model between epochs (history.csv, metrics.json). The export stage always scores the
    whole test split (eval.json), which the tables report."""
    every: COUNT = 1  # test after every k-th epoch, and always after a run's (or StableKD stage's) last one
    # Test on this share of every class of the test split: the same images for every run (drawn with seed 0).
    test_fraction: Annotated[float, Field(gt=0, le=1)] = 1.0


class Run(Strict):
    model: str  # a name in kdlib/models/registry.py (listed at the end of this page)
    dataset: str  # a name under `datasets`
    # Channel multiplier; below 1/16 the narrowest layers of every family keep one or two channels.
    width: Annotated[float, Field(ge=0.0625, le=16)] = 1.0
    block_type: Literal["base", "acb"] = "base"  # acb: every eligible KxK conv becomes an ACB, fused for inference
    pretrained: bool = False  # start from published ImageNet weights (torchvision models only)
    epochs: COUNT
    batch_size: COUNT = 128
    seed: SEED = 0  # weights, data order, augmentation and the train_fraction subset
    # Replicates: one run per seed, named <run>_s<seed>, each a node of its own; tables give mean ± std.
    seeds: Annotated[list[SEED], Field(min_length=1, max_length=1000)] | None = None
    optimizer: Optimizer = Optimizer()
    schedule: Schedule = Schedule()
    augment: Augment = Augment()
    mix: Mix | None = None
    label_smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.0  # on the hard (label) loss
    # Train on this share of every class of the training split, the same images for every run with this seed.
    train_fraction: Annotated[float, Field(gt=0, le=1)] = 1.0
    amp: Literal["none", "bf16", "fp16"] = "none"  # mixed precision: bf16 on CPU or CUDA, fp16 on CUDA only
    evaluation: Evaluation = Evaluation()
    teacher: str | None = None  # a run to distil from (in its inference form: an ACB teacher fused)
    distill: Distill | None = None  # how (with a teacher; default: logit KD)
    # Replay the teacher's logits from a stage that ran the teacher once over this run's training stream (shared by
    # every run with the same stream and teacher: a temperature or alpha sweep trains at the student's cost), or run
    # the teacher live. null: cached where the method reads only the teacher's logits (logits, logits_mse, dkd).
    teacher_cache: bool | None = None

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
        return stage_epochs(self)

    @model_validator(mode="after")
    def _stablekd_stages(self):
        stablekd = self.distill is not None and self.distill.method == "stablekd"
        if self.schedule.name == "stagewise" and not stablekd:
            raise ValueError("schedule 'stagewise' follows StableKD's stages; it needs distill.method 'stablekd'")
        class_indices = self.distill is not None and METHODS[self.distill.method]["needs_class_indices"]
        if self.mix is not None and class_indices:
            raise ValueError(f"distill.method '{self.distill.method}' splits target and non-target classes; it needs "
                             "unmixed labels (remove 'mix')")
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

    def caches_teacher(self) -> bool:
        """Whether this run replays its teacher's logits (kdlib.distill.teacher_outputs)."""
        return self.teacher is not None and self.teacher_cache is not False and \
            METHODS[self.distill.method]["teacher_logits_only"]

    @model_validator(mode="after")
    def _cache_applies(self):
        if self.teacher_cache and self.teacher is None:
            raise ValueError("'teacher_cache: true' needs a 'teacher' whose outputs it caches")
        method = self.distill.method if self.distill is not None else Distill().method
        if self.teacher_cache and not METHODS[method]["teacher_logits_only"]:
            only = ", ".join(m for m, row in METHODS.items() if row["teacher_logits_only"])
            raise ValueError(f"teacher_cache: distill.method '{method}' reads more of the teacher than its "
                             f"logits (cached for: {only}); remove 'teacher_cache'")
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
    seed001: Seed001Report | None = None  # null: no seed 001 tables
    seed002: Seed002Report | None = None  # null: no seed 002 chain tables
    seed003: Seed003Report | None = None  # null: no seed 003 tables


class TeacherOutputs(Strict):
    """How the teacher-output cache stores a teacher's logits (runs' `teacher_cache`; kdlib.distill.teacher_outputs)."""
    # float32: a cached run equals its live-teacher run bit for bit (same device and threads); float16 halves the
    # files, and its rounding, amplified by training, moves the tiny profile's first-epoch loss by about 0.3 %
    precision: Literal["float16", "float32"] = "float32"
    # Keep each image's k largest logits and the rest's total probability, spread evenly over them (null: every
    # logit). Exact at temperature 1 for the k classes, approximate at others.
    top_k: Annotated[int, Field(ge=1, le=100_000)] | None = None
    # A cache's size limit (images x epochs x classes x bytes), checked before its stage runs the teacher
    max_mb: Annotated[float, Field(gt=0, le=10_000_000)] = 4096.0


class Export(Strict):
    """How stages/export.py times every run's inference form (eager PyTorch and onnxruntime, median ms per batch).
    Parity is not a setting: logits within 1e-4 and the same top-1 on every test image, or the stage fails."""
    # Batch sizes timed
    latency_batches: Annotated[list[Annotated[int, Field(gt=0, le=4096)]], Field(min_length=1)] = [1, 64]
    latency_seconds: Annotated[float, Field(gt=0, le=600)] = 1.0  # timing budget per batch size, all candidates together
