"""Training streams: which runs see the same batches from the same teacher, and so share one teacher-output cache.

A run's training stream (kdlib.data.stream) is fixed by its dataset, train_fraction, seed, batch size, epochs,
augmentation, mixing and precision. Runs that replay their teacher's logits (`Run.caches_teacher`) and have the same
stream, teacher and storage settings read one cache (kdlib.distill.teacher_outputs), a stage of its own. Torch-free:
the DAG is built from this.
"""
from __future__ import annotations

import json

from kdlib.config.lineage import ancestors
from kdlib.config.params import Params

STREAM_KEYS = ("dataset", "train_fraction", "seed", "batch_size", "epochs", "augment", "mix", "amp")


def stream_recipe(params: Params, name: str) -> dict:
    """What run `name`'s cached logits depend on: its dataset, its stream's settings, its teacher and the teacher's
    ancestors, and how the logits are stored."""
    run = params.runs[name]
    recipe = run.recipe()
    return {"dataset": params.datasets[run.dataset].model_dump(mode="json"),
            "stream": {k: recipe[k] for k in STREAM_KEYS}, "teacher": run.teacher,
            "teachers": {n: params.runs[n].recipe() for n in ancestors(params, name)},
            "storage": params.teacher_outputs.model_dump(mode="json")}


def streams(params: Params) -> dict[str, list[str]]:
    """Cache name -> the runs that replay it (those with one stream recipe), for every run that replays its teacher's
    logits. A cache is named after the first of its runs in alphabetical order: an edit that changes a stream's
    recipe but not who shares it (or the order of the runs) keeps every stage's name, so the DVC pipeline stays as
    it was (the recipe, not the name, says what to re-run)."""
    groups: dict[str, list[str]] = {}
    for name, run in params.runs.items():
        if run.caches_teacher():
            key = json.dumps(stream_recipe(params, name), sort_keys=True)
            groups.setdefault(key, []).append(name)
    return {min(readers): readers for readers in groups.values()}


def stream_name(params: Params, name: str) -> str:
    """The cache run `name` reads."""
    return next(stream for stream, readers in streams(params).items() if name in readers)
