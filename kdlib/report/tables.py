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
from kdlib.report import seed000

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend first)


def _read(name: str, acb: bool) -> dict:
    folder = run_dir(name)
    return {"metrics": json.loads((folder / "metrics.json").read_text()),
            "eval": json.loads((folder / "eval.json").read_text()),
            "fuse": json.loads((folder / "fuse.json").read_text()) if acb else None,
            "history": pd.read_csv(folder / "history.csv")}


def _pct(x: float) -> str:
    return f"{x:.2f}"


def runs_table(params: Params, results: dict) -> str:
    rows = []
    for name, run in params.runs.items():
        m, e = results[name]["metrics"], results[name]["eval"]
        rows.append([name, run.model, run.width, run.block_type, run.teacher or "-", run.dataset, run.epochs, run.seed,
                     f"{m['params'] / 1e6:.3f}", f"{m['flops'] / 1e6:.1f}", _pct(m["best"]["test_acc"]),
                     m["best"]["epoch"], _pct(m["final"]["test_acc"]), _pct(e["test_acc"])])
    return tabulate(rows, headers=["run", "model", "width", "blocks", "teacher", "dataset", "epochs", "seed", "params (M)",
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
    results = {name: _read(name, run.block_type == "acb") for name, run in params.runs.items()}
    pairs = seed000.find_pairs(params)
    tables = {"runs": runs_table(params, results), "teacher_student": teacher_student_table(params, results),
              **{f"seed000_table{i}": table(params, pairs, results)
                 for i, table in enumerate((seed000.table1, seed000.table2, seed000.table3), start=1)}}
    for name, text in tables.items():
        atomic_write_text(RESULTS / "tables" / f"{name}.md", text + "\n")
    accuracy_figure(params, results, RESULTS / "figures" / "test_accuracy.png")
    seed000.curves_figure(params, pairs, results, RESULTS / "figures" / "seed000_curves.png")
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
              "## Test accuracy per epoch", "", "![test accuracy](figures/test_accuracy.png)", "",
              *_seed000_section(params, pairs, results, tables)]
    atomic_write_text(RESULTS / "report.md", "\n".join(report))


def _seed000_section(params: Params, pairs: list, results: dict, tables: dict) -> list[str]:
    if not pairs:
        return []
    acb = [results[n]["fuse"] for n, r in params.runs.items() if r.block_type == "acb"]
    fused = (f"All {len(acb)} ACB runs were fused into plain convs and evaluated fused; on every test image "
             f"the fused model predicted the same class as the unfused one (largest logit difference "
             f"{max(f['max_abs_logit_diff'] for f in acb):.1e}). Latency: median ms per batch of "
             f"{acb[0]['latency_ms_per_batch']['batch_size']} images on {acb[0]['latency_ms_per_batch']['device']} "
             f"({acb[0]['latency_ms_per_batch']['threads']} threads); 'plain' is the same architecture built with "
             "block_type base (conv + BN, unfused).") if acb else ""
    return ["## Seed 000: ACNet and distillation", "",
            "Our columns: this profile's data, budget and seed (above); students distilled from the teacher's "
            "fused form. The seed's columns are its published CIFAR-10 numbers (50 epochs), for reference only "
            "where the dataset differs.", "", fused, "",
            "### Table 1: student vs teacher", "", tables["seed000_table1"], "",
            "(The seed prints LeNet's gain as 5.42; its own two numbers, 88.96 - 83.72, give 5.24.)", "",
            "### Table 2: baseline vs ACB", "", tables["seed000_table2"], "",
            "### Table 3: baseline vs KD", "", tables["seed000_table3"], "",
            "### Validation accuracy per epoch", "",
            "While alpha = 1 (darkest shade), feature KD trains the convolutions on the teacher's feature map "
            "only and the classifier gets no loss, so its accuracy stays near chance until the labels come in "
            "(the seed's appendix).", "", "![seed 000 curves](figures/seed000_curves.png)", ""]
