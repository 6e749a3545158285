"""Every run's outputs, read once, and looked up by the run as params.yaml writes it.

A written run with `seeds` trained once per seed, so its figures are `Values`: {seed: value}; a run without
`seeds` has one value, under the key None, that pairs with every seed of its students. Tables print a single
value as it is and several as mean ± sample std with their count; `combine` pairs values seed by seed.
"""
from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from kdlib.atomic import atomic_write_text
from kdlib.config import Params

Values = dict[int | None, float]


def _read(folder: Path, acb: bool) -> dict:
    return {"metrics": json.loads((folder / "metrics.json").read_text()),
            "eval": json.loads((folder / "eval.json").read_text()),
            "samples": json.loads((folder / "samples.json").read_text()),
            "fuse": json.loads((folder / "fuse.json").read_text()) if acb else None,
            "export": json.loads((folder / "export.json").read_text()),
            "history": pd.read_csv(folder / "history.csv")}


class Results:
    def __init__(self, params: Params):
        self.params = params
        self.by_run = {name: _read(params.layout.run_dir(name), run.block_type == "acb") for name, run in params.runs.items()}

    def members(self, name: str) -> dict[int, str]:
        """Seed -> the trained run, for a written run."""
        return self.params.replicas[name]

    def first_name(self, name: str) -> str:
        """The run a written run trained for its first seed."""
        return next(iter(self.members(name).values()))

    def first(self, name: str) -> dict:
        """The outputs of a written run's first seed (curves, latencies: one seed shows the shape)."""
        return self.by_run[self.first_name(name)]

    def values(self, name: str, pick: Callable[[dict], float]) -> Values:
        shared = self.params.written[name].seeds is None
        return {None if shared else seed: pick(self.by_run[run]) for seed, run in self.members(name).items()}

    def acc(self, name: str) -> Values:
        """Top-1 (%) of the inference form (an ACB run's fused deploy.pt) on the test split."""
        return self.values(name, lambda r: r["eval"]["test_acc"])

    def inference_params(self, name: str) -> int:
        """Parameters of the model as deployed (an ACB run fused); the same for every seed."""
        r = self.first(name)
        return r["fuse"]["params"]["fused"] if r["fuse"] else r["metrics"]["params"]


def combine(op: Callable[..., float], *operands: Values) -> Values:
    """`op` seed by seed over the seeds the replicated operands share; an operand without seeds (a teacher
    shared by every seed of its students) pairs with each of them."""
    replicated = [v for v in operands if None not in v]
    seeds = sorted(set.intersection(*(set(v) for v in replicated))) if replicated else [None]
    return {s: op(*(v[None] if None in v else v[s] for v in operands)) for s in seeds}


def mean(v: Values) -> float:
    return statistics.fmean(v.values())


def cell(v: Values | None, spec: str = ".2f", suffix: str = "") -> str:
    """'53.10' for one seed, '53.10 ± 1.20 (n=3)' for several (sample std, at the mean's precision); '-' when
    there is nothing (no run, or no seed two runs share)."""
    if not v:
        return "-"
    xs = list(v.values())
    if any(math.isnan(x) for x in xs):
        return "n/a"
    if len(xs) == 1:
        return f"{xs[0]:{spec}}{suffix}"
    return f"{statistics.fmean(xs):{spec}}{suffix} ± {statistics.stdev(xs):{spec.lstrip('+')}} (n={len(xs)})"



def write_table(path: Path, text: str) -> None:
    """A study's Markdown table file: the table as report.md prints it, and a final newline."""
    atomic_write_text(path, text + "\n")
