"""The tables stage's studies: each one's writer, when it applies, and the files it writes. The one place an output
of the tables stage is named: the DAG builder lists `report_outputs(params)` as the stage's outputs, and each writer
takes its paths from `Study.outputs(params)`.

Light on purpose (the DAG builder imports it): no torch, pandas or matplotlib here. A study names the module that
writes it as a dotted string, which only the tables stage imports (so the DAG builder must list those modules as
the tables stage's code dependencies: an import-following scan does not see them). Every such module has the same
entry point, `write(params, results, outputs)` (ENTRY): it writes the files of `outputs`, its study's
`outputs(params)`, and returns its section of report.md (a list of lines, possibly empty); the tables stage writes
report.md as the sections joined in the order of STUDIES.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kdlib.config import Params

ENTRY = "write"  # every study module's entry point: write(params, results, outputs) -> report lines


def report_file(params: Params) -> Path:
    """The overview's: every applicable study's section, stitched by kdlib.report.tables."""
    return params.layout.results / "report.md"


def link(params: Params, path: Path) -> str:
    """`path` as report.md links to it."""
    return str(path.relative_to(report_file(params).parent))


def _table(p: Params, name: str) -> Path:
    return p.layout.results / "tables" / f"{name}.md"


def _figure(p: Params, name: str) -> Path:
    return p.layout.results / "figures" / f"{name}.png"


def dense_report_files(params: Params, name: str) -> tuple[Path, Path]:
    """A dense experiment's table and figure."""
    return _table(params, f"seed002_{name}"), _figure(params, f"seed002_{name}")


def _always(params: Params) -> bool:
    return True


@dataclass(frozen=True)
class Study:
    name: str
    module: str  # dotted; its ENTRY writes the study. Imported by the tables stage only
    applies: Callable[[Params], bool]
    outputs: Callable[[Params], dict[str, Path]]  # key (what the writer looks a file up by) -> path


STUDIES: tuple[Study, ...] = (
    Study("overview", "kdlib.report.overview", _always,
          lambda p: {"report": report_file(p), "runs": _table(p, "runs"),
                     "teacher_student": _table(p, "teacher_student")}),
    Study("efficiency", "kdlib.report.efficiency", _always, lambda p: {"table": _table(p, "efficiency")}),
    Study("accuracy", "kdlib.report.accuracy", _always, lambda p: {"figure": _figure(p, "test_accuracy")}),
    Study("seed000", "kdlib.report.seed000", _always,
          lambda p: {**{f"table{i}": _table(p, f"seed000_table{i}") for i in (1, 2, 3)},
                     "curves": _figure(p, "seed000_curves")}),
    Study("seed001", "kdlib.report.seed001", lambda p: p.report.seed001 is not None,
          lambda p: {**{f"table{i}": _table(p, f"seed001_table{i}") for i in (4, 6, 7, 8)},
                     "loss_curves": _figure(p, "seed001_loss_curves")}),
    Study("seed002", "kdlib.report.seed002", lambda p: p.report.seed002 is not None,
          lambda p: {"task1": _table(p, "seed002_task1"), "task3": _table(p, "seed002_task3"),
                     "accuracy_params": _figure(p, "seed002_accuracy_params"),
                     "predictions": _figure(p, "seed002_predictions")}),
    Study("seed002_dense", "kdlib.report.seed002_dense", lambda p: bool(p.dense),
          lambda p: {f"{name}.{kind}": path for name in p.dense
                     for kind, path in zip(("table", "figure"), dense_report_files(p, name))}),
    Study("seed003", "kdlib.report.seed003", lambda p: p.report.seed003 is not None,
          lambda p: {**{f"table{i}": _table(p, f"seed003_table{i}") for i in (2, 4, 5, 7)},
                     "curves": _figure(p, "seed003_curves")}),
)


def applicable(params: Params) -> list[Study]:
    return [s for s in STUDIES if s.applies(params)]


def report_outputs(params: Params) -> list[str]:
    """What the tables stage writes: every output of every study that applies to params, in the order of STUDIES."""
    return [str(path) for study in applicable(params) for path in study.outputs(params).values()]
