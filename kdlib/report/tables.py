"""Result tables (Markdown, via tabulate), the accuracy-curve figure, and report.md that stitches them."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import pandas as pd
from tabulate import tabulate

from kdlib.config import Params
from kdlib.engine.atomic import atomic_write_text
from kdlib.paths import RESULTS, dataset_dir, run_dir

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend first)


def _read(name: str) -> dict:
    folder = run_dir(name)
    return {"metrics": json.loads((folder / "metrics.json").read_text()),
            "eval": json.loads((folder / "eval.json").read_text()),
            "history": pd.read_csv(folder / "history.csv")}


def _pct(x: float) -> str:
    return f"{x:.2f}"


def runs_table(params: Params, results: dict) -> str:
    rows = []
    for name, run in params.runs.items():
        m, e = results[name]["metrics"], results[name]["eval"]
        rows.append([name, run.model, run.width, run.teacher or "-", run.dataset, run.epochs, run.seed,
                     f"{m['params'] / 1e6:.3f}", f"{m['flops'] / 1e6:.1f}", _pct(m["best"]["test_acc"]),
                     m["best"]["epoch"], _pct(m["final"]["test_acc"]), _pct(e["test_acc"])])
    return tabulate(rows, headers=["run", "model", "width", "teacher", "dataset", "epochs", "seed", "params (M)",
                                   "MFLOPs", "best top-1 (%)", "best epoch", "final top-1 (%)", "eval top-1 (%)"],
                    tablefmt="github", disable_numparse=True)


def _same_recipe(a, b) -> bool:
    """Same model and training recipe; only the teacher may differ (the fair scratch baseline)."""
    return a.model_dump(exclude={"teacher", "distill"}) == b.model_dump(exclude={"teacher", "distill"})


def teacher_student_table(params: Params, results: dict) -> str:
    """For every distilled run: its teacher, the scratch baseline of the same model if one exists, and the gaps."""
    rows = []
    for name, run in params.runs.items():
        if run.teacher is None:
            continue
        student = results[name]["eval"]["test_acc"]
        teacher = results[run.teacher]["eval"]["test_acc"]
        baseline = next((b for b, r in params.runs.items() if r.teacher is None and _same_recipe(r, run)), None)
        base_acc = results[baseline]["eval"]["test_acc"] if baseline else None
        rows.append([name, run.teacher, _pct(teacher), baseline or "-", _pct(base_acc) if baseline else "-",
                     _pct(student), f"{student - base_acc:+.2f}" if baseline else "-", f"{teacher - student:+.2f}"])
    if not rows:
        return "_No distilled runs in this profile._"
    return tabulate(rows, headers=["student", "teacher", "teacher top-1 (%)", "scratch baseline", "baseline top-1 (%)",
                                   "distilled top-1 (%)", "KD gain (pts)", "gap to teacher (pts)"], tablefmt="github", disable_numparse=True)


def accuracy_figure(params: Params, results: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    for name in params.runs:
        h = results[name]["history"]
        ax.plot(h["epoch"], h["test_acc"], marker="o", markersize=3, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test top-1 (%)")
    ax.set_title(f"Test accuracy per epoch ({params.profile} profile)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _dataset_lines(params: Params) -> list[str]:
    lines = []
    for ds in sorted({r.dataset for r in params.runs.values()}):
        meta = json.loads((dataset_dir(ds) / "meta.json").read_text())
        lines.append(f"- **{ds}**: {meta['description']}; {len(meta['classes'])} classes, "
                     f"{meta['num_train']} train / {meta['num_test']} test images at {meta['image_size']}x{meta['image_size']}.")
    return lines


def write_report(params: Params) -> None:
    results = {name: _read(name) for name in params.runs}
    tables = {"runs": runs_table(params, results), "teacher_student": teacher_student_table(params, results)}
    for name, text in tables.items():
        atomic_write_text(RESULTS / "tables" / f"{name}.md", text + "\n")
    accuracy_figure(params, results, RESULTS / "figures" / "test_accuracy.png")
    seeds = sorted({r.seed for r in params.runs.values()})
    budget = sorted({r.epochs for r in params.runs.values()})
    report = [f"# Results: `{params.profile}` profile", "", params.description, "",
              "All accuracies are top-1 on each dataset's test split (CIFAR practice: the test split is also the "
              "per-epoch validation split, so 'best' is an optimistic, reported-for-comparison figure; 'final' is the "
              "honest one). FLOPs are PyTorch's FlopCounterMode count for one image (a multiply-add counts 2).", "",
              "## Data", "", *_dataset_lines(params), "",
              f"Budget: {', '.join(map(str, budget))} epochs per run; seed(s): {', '.join(map(str, seeds))}.", "",
              "## Runs", "", tables["runs"], "",
              "## Teachers and students", "", tables["teacher_student"], "",
              "## Test accuracy per epoch", "", "![test accuracy](figures/test_accuracy.png)", ""]
    atomic_write_text(RESULTS / "report.md", "\n".join(report))
