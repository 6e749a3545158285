"""How runs relate through their teachers: a run's ancestors, a student's scratch baseline."""
from __future__ import annotations

from typing import TYPE_CHECKING

from kdlib.config.schema import Run

if TYPE_CHECKING:
    from kdlib.config.params import Params


def scratch_baseline(runs: dict[str, Run], student: str) -> str | None:
    """The run trained without a teacher on the student's exact recipe, if there is one."""
    recipe = runs[student].model_dump(exclude={"teacher", "distill"})
    return next((name for name, run in runs.items()
                 if run.teacher is None and run.model_dump(exclude={"teacher", "distill"}) == recipe), None)


def ancestors(params: Params, name: str) -> list[str]:
    """Teachers of a run, nearest first."""
    out, node = [], params.runs[name].teacher
    while node is not None:
        out.append(node)
        node = params.runs[node].teacher
    return out
