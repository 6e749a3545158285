"""The head of report.md: the profile, its data and budget, every trained run (runs.md) and every teacher-student
pair with its scratch baseline (teacher_student.md)."""
from __future__ import annotations

import json
from pathlib import Path

from tabulate import tabulate

from kdlib.config import Params, scratch_baseline
from kdlib.report.results import Results, cell, combine, write_table


def runs_table(params: Params, res: Results) -> str:
    """Every trained run, one row per seed."""
    rows = []
    for name, run in params.runs.items():
        m, e = res.by_run[name]["metrics"], res.by_run[name]["eval"]
        # The form trained (an ACB run's unfused branches), as the export stage counted it.
        trained = res.by_run[name]["export"]["forms"]["unfused" if run.block_type == "acb" else "deployed"]
        rows.append([name, run.model, run.width, run.block_type, run.teacher or "-", run.dataset, run.epochs, run.seed,
                     m["train_images"], f"{m['test_images']} / {e['num_test']}",
                     f"{m['params'] / 1e6:.3f}", f"{trained['flops'] / 1e6:.1f}", f"{m['best']['test_acc']:.2f}",
                     m["best"]["epoch"], f"{m['final']['test_acc']:.2f}", f"{e['test_acc']:.2f}"])
    # Best and final: on the test images training evaluated (every `evaluation.every` epochs); eval: the whole split.
    return tabulate(rows, headers=["run", "model", "width", "blocks", "teacher", "dataset", "epochs", "seed",
                                   "train images", "test images (training / eval)", "params (M)", "MFLOPs",
                                   "best top-1 (%)", "best epoch", "final top-1 (%)", "eval top-1 (%)"],
                    tablefmt="github", disable_numparse=True)


def teacher_student_table(params: Params, res: Results) -> str:
    """For every distilled run: its teacher, the scratch baseline of the same recipe if one exists, and the gaps."""
    rows = []
    for name, run in params.written.items():
        if run.teacher is None:
            continue
        student, teacher = res.acc(name), res.acc(run.teacher)
        baseline = scratch_baseline(params.written, name)
        gain = cell(combine(lambda s, b: s - b, student, res.acc(baseline)), "+.2f") if baseline else "-"
        rows.append([name, run.teacher, cell(teacher), baseline or "-", cell(res.acc(baseline)) if baseline else "-",
                     cell(student), gain, cell(combine(lambda t, s: t - s, teacher, student), "+.2f")])
    if not rows:
        return "_No distilled runs in this profile._"
    return tabulate(rows, headers=["student", "teacher", "teacher top-1 (%)", "scratch baseline", "baseline top-1 (%)",
                                   "distilled top-1 (%)", "KD gain (pts)", "gap to teacher (pts)"], tablefmt="github",
                    disable_numparse=True)


def _dataset_lines(params: Params) -> list[str]:
    lines = []
    for ds in sorted({r.dataset for r in params.runs.values()}):
        meta = json.loads((params.layout.dataset_dir(ds) / "meta.json").read_text())
        lines.append(f"- **{ds}**: {meta['description']}; {len(meta['classes'])} classes, "
                     f"{meta['num_train']} train / {meta['num_test']} test images at {meta['image_size']}x{meta['image_size']} "
                     "(what each run used of them: the runs table).")
    return lines


def write(params: Params, res: Results, outputs: dict[str, Path]) -> list[str]:
    """runs.md and teacher_student.md; returns the head of report.md (the tables stage writes report.md itself,
    from every study's section)."""
    runs, pairs = runs_table(params, res), teacher_student_table(params, res)
    write_table(outputs["runs"], runs)
    write_table(outputs["teacher_student"], pairs)
    seeds = sorted({r.seed for r in params.runs.values()})
    budget = sorted({r.epochs for r in params.runs.values()})
    return [f"# Results: `{params.profile}` profile", "", params.description, "",
            "All accuracies are top-1 on each dataset's test split (CIFAR practice: the test split is also the "
            "per-epoch validation split, so 'best' is an optimistic, reported-for-comparison figure; 'final' is the "
            "honest one). FLOPs are PyTorch's FlopCounterMode count for one image (a multiply-add counts 2). "
            "A run given several seeds shows mean ± sample standard deviation over them, with their number n; "
            "differences (gains, gaps) are taken seed by seed first.", "",
            "## Data", "", *_dataset_lines(params), "",
            f"Budget: {', '.join(map(str, budget))} epochs per run; seed(s): {', '.join(map(str, seeds))}.", "",
            "## Runs", "", runs, "",
            "## Teachers and students", "", pairs, ""]
