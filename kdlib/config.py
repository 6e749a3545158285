"""Load and validate params.yaml before any work starts.

Every problem becomes one KDError that names the offending key, e.g.
`params.yaml: runs.student.distill.alpha: must be between 0 and 1 (got 1.5)`.
"""
from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kdlib.errors import KDError
from kdlib.models import MODELS, PRETRAINED

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
    name: Literal["cosine", "onecycle", "constant"] = "cosine"
    warmup_epochs: Annotated[float, Field(ge=0)] = 0  # linear warm-up before cosine
    min_lr: Annotated[float, Field(ge=0)] = 0.0


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


class Mix(Strict):
    """Per batch, Mixup or CutMix with equal chance (torchvision v2); labels mix by lambda."""
    mixup_alpha: Annotated[float, Field(gt=0)] = 0.8
    cutmix_alpha: Annotated[float, Field(gt=0)] = 1.0


class Distill(Strict):
    # logits: Hinton's KL at temperature T (times T^2); logits_mse: MSE between logits;
    # feature: L2 between the last conv feature maps, through a learned 1x1 projector if shapes differ.
    method: Literal["logits", "logits_mse", "feature"] = "logits"
    alpha: Annotated[float, Field(ge=0, le=1)] = 0.9  # weight of the KD term; 1 - alpha weighs cross-entropy
    # Alpha per epoch: constant; linear from alpha to alpha_end; three_phase (seed 000): 1, 0.5, 0 by thirds.
    schedule: Literal["constant", "linear", "three_phase"] = "constant"
    alpha_end: Annotated[float, Field(ge=0, le=1)] | None = None
    temperature: Annotated[float, Field(gt=0)] = 4.0

    @model_validator(mode="after")
    def _schedule_keys(self):
        if self.schedule == "linear" and self.alpha_end is None:
            raise ValueError("schedule 'linear' needs 'alpha_end' (alpha at the last epoch)")
        if self.schedule != "linear" and self.alpha_end is not None:
            raise ValueError(f"'alpha_end' only applies to schedule 'linear' (schedule is '{self.schedule}')")
        if self.schedule == "three_phase" and "alpha" in self.model_fields_set:
            raise ValueError("schedule 'three_phase' fixes alpha at 1, 0.5, 0 by thirds of the epochs; remove 'alpha'")
        return self


class Run(Strict):
    model: str
    dataset: str
    width: Annotated[float, Field(gt=0)] = 1.0
    block_type: Literal["base", "acb"] = "base"  # acb: every eligible KxK conv becomes an ACB, fused for inference
    pretrained: bool = False  # start from published ImageNet weights (torchvision models only)
    epochs: Annotated[int, Field(gt=0)]
    batch_size: Annotated[int, Field(gt=0)] = 128
    seed: int = 0
    optimizer: Optimizer = Optimizer()
    schedule: Schedule = Schedule()
    augment: Augment = Augment()
    mix: Mix | None = None
    label_smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.0  # on the hard (label) loss
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

    @model_validator(mode="after")
    def _three_phases_need_three_epochs(self):
        if self.distill is not None and self.distill.schedule == "three_phase" and self.epochs < 3:
            raise ValueError(f"distill.schedule 'three_phase' needs at least 3 epochs, one per phase "
                             f"(epochs is {self.epochs})")
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


class Params(Strict):
    profile: str = "custom"
    description: str = ""
    datasets: dict[str, DatasetSpec]
    runs: dict[str, Run]


_ALL_KEYS = {f for m in (Params, DatasetSpec, Run, Optimizer, Schedule, Augment, ColorJitter, RandomErasing, Mix,
                         Distill) for f in m.model_fields}


def _suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML loader that rejects a key given twice in one mapping (PyYAML silently keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
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


def sets(raw_run: dict, path) -> bool:
    """Whether a run's own params-file entry gives the key at `path` (rather than inheriting it)."""
    node = raw_run
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _describe(err: dict, raw_run: dict | None, run_name: str | None) -> str:
    """Turn one pydantic error into 'key.path: message', naming `defaults` when the key came from there."""
    loc = [str(p) for p in err["loc"]]
    if run_name is not None:
        # Keys the run itself does not give came from `defaults` (or are missing altogether).
        prefix = ["runs", run_name] if sets(raw_run, loc) or err["type"] == "missing" else ["defaults"]
        loc = prefix + loc
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
    raw = dict(raw)
    defaults = raw.pop("defaults", None) or {}
    raw_runs = raw.get("runs") or {}
    shapes = [(key, value) for key, value in (("defaults", defaults), ("runs", raw_runs),
                                              ("datasets", raw.get("datasets") or {}))
              if not isinstance(value, dict)]
    shapes += [(f"runs.{n}", r) for n, r in (raw_runs.items() if isinstance(raw_runs, dict) else ())
               if r is not None and not isinstance(r, dict)]
    if shapes:
        raise KDError(f"{source}: " + "; ".join(f"{k}: must be a mapping of keys, not {type(v).__name__}"
                                                 for k, v in shapes))
    problems = []
    for section in ("runs", "datasets"):
        for name in raw.get(section) or {}:
            if not RUN_NAME.match(str(name)):
                problems.append(f"{section}.{name}: names must start with a letter and use only letters, digits and _")
    runs = {}
    for name, run in raw_runs.items():
        merged = _merge(defaults, run or {})
        try:
            runs[name] = Run.model_validate(merged)
        except ValidationError as e:
            problems += [_describe(err, run or {}, name) for err in e.errors()]
    try:
        params = Params.model_validate({**raw, "runs": {}})
    except ValidationError as e:
        problems += [_describe(err, None, None) for err in e.errors()]
        params = None
    if not problems and params is not None:
        params = params.model_copy(update={"runs": runs})
        problems += _cross_check(params)
    problems = list(dict.fromkeys(problems))  # a bad default shows once, not once per run
    if problems:
        raise KDError(f"{source}: " + (problems[0] if len(problems) == 1 else "\n  " + "\n  ".join(problems)))
    return params


def _cross_check(params: Params) -> list[str]:
    problems = []
    if not params.runs:
        problems.append("runs: no runs defined")
    for name, run in params.runs.items():
        if run.dataset not in params.datasets:
            problems.append(f"runs.{name}.dataset: unknown dataset '{run.dataset}'"
                            f"{_suggest(run.dataset, params.datasets)} (defined: {', '.join(params.datasets)})")
        if run.teacher is None:
            continue
        teacher = params.runs.get(run.teacher)
        if teacher is None:
            problems.append(f"runs.{name}.teacher: '{run.teacher}' names no run{_suggest(run.teacher, params.runs)}")
        elif teacher.dataset != run.dataset:
            problems.append(f"runs.{name}.teacher: '{run.teacher}' trains on '{teacher.dataset}', "
                            f"but '{name}' on '{run.dataset}'")
    if not problems:
        problems += _cycles(params)
    return problems


def _cycles(params: Params) -> list[str]:
    for start in params.runs:
        chain, node = [start], params.runs[start].teacher
        while node is not None:
            if node in chain:
                loop = chain[chain.index(node):] + [node]
                return [f"runs.{start}.teacher: teacher chain has a cycle: {' -> '.join(loop)}"]
            chain.append(node)
            node = params.runs[node].teacher
    return []


def ancestors(params: Params, name: str) -> list[str]:
    """Teachers of a run, nearest first."""
    out, node = [], params.runs[name].teacher
    while node is not None:
        out.append(node)
        node = params.runs[node].teacher
    return out
