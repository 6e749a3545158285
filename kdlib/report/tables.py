"""Result tables (Markdown, via tabulate), the accuracy-curve figure, and report.md that stitches them."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import pandas as pd
from tabulate import tabulate

from kdlib.config import Params, scratch_baseline
from kdlib.atomic import atomic_write_text
from kdlib.paths import RESULTS, dataset_dir
from kdlib.report import efficiency, seed000, seed001, seed002, seed002_dense, seed003
from kdlib.report.results import Results, cell, combine

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend first)


def runs_table(params: Params, res: Results) -> str:
    """Every trained run, one row per seed."""
    rows = []
    for name, run in params.runs.items():
        m, e = res.by_run[name]["metrics"], res.by_run[name]["eval"]
        rows.append([name, run.model, run.width, run.block_type, run.teacher or "-", run.dataset, run.epochs, run.seed,
                     f"{m['params'] / 1e6:.3f}", f"{m['flops'] / 1e6:.1f}", f"{m['best']['test_acc']:.2f}",
                     m["best"]["epoch"], f"{m['final']['test_acc']:.2f}", f"{e['test_acc']:.2f}"])
    return tabulate(rows, headers=["run", "model", "width", "blocks", "teacher", "dataset", "epochs", "seed", "params (M)",
                                   "MFLOPs", "best top-1 (%)", "best epoch", "final top-1 (%)", "eval top-1 (%)"],
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


def accuracy_figure(params: Params, res: Results, path: Path) -> None:
    """Test accuracy per epoch of every written run, averaged over its seeds."""
    fig, ax = plt.subplots(figsize=(9, 5))
    for name in params.written:
        curves = pd.concat([res.by_run[r]["history"].set_index("epoch")["test_acc"] for r in res.members(name).values()],
                           axis=1).mean(axis=1)
        ax.plot(curves.index, curves.values, marker="o", markersize=2, linewidth=1, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test top-1 (%), mean over seeds")
    ax.set_title(f"Test accuracy per epoch ({params.profile} profile)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2, loc="center left", bbox_to_anchor=(1.01, 0.5))
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
    res = Results(params)
    pairs = seed000.find_pairs(params)
    tables = {"runs": runs_table(params, res), "teacher_student": teacher_student_table(params, res),
              "efficiency": efficiency.efficiency_table(params, res),
              **{f"seed000_table{i}": table(params, pairs, res)
                 for i, table in enumerate((seed000.table1, seed000.table2, seed000.table3), start=1)}}
    if params.report.seed001:
        tables |= {"seed001_table4": seed001.version_table(params, res, "v1"),
                   "seed001_table6": seed001.version_table(params, res, "v2"),
                   "seed001_table7": seed001.comparison_table(params, res),
                   "seed001_table8": seed001.efficiency_table(params, res)}
    if params.report.seed002:
        tables |= {"seed002_task1": seed002.task1_table(params, res), "seed002_task3": seed002.task3_table(params, res)}
    study = seed003.Study(params, res) if params.report.seed003 else None
    if study:
        tables |= {"seed003_table5": seed003.budget_table(study), "seed003_table2": seed003.data_table(study),
                   "seed003_table4": seed003.ablation_table(study), "seed003_table7": seed003.time_table(study)}
    for name, text in tables.items():
        atomic_write_text(RESULTS / "tables" / f"{name}.md", text + "\n")
    figures = RESULTS / "figures"
    accuracy_figure(params, res, figures / "test_accuracy.png")
    seed000.curves_figure(params, pairs, res, figures / "seed000_curves.png")
    seeds = sorted({r.seed for r in params.runs.values()})
    budget = sorted({r.epochs for r in params.runs.values()})
    report = [f"# Results: `{params.profile}` profile", "", params.description, "",
              "All accuracies are top-1 on each dataset's test split (CIFAR practice: the test split is also the "
              "per-epoch validation split, so 'best' is an optimistic, reported-for-comparison figure; 'final' is the "
              "honest one). FLOPs are PyTorch's FlopCounterMode count for one image (a multiply-add counts 2). "
              "A run given several seeds shows mean ± sample standard deviation over them, with their number n; "
              "differences (gains, gaps) are taken seed by seed first.", "",
              "## Data", "", *_dataset_lines(params), "",
              f"Budget: {', '.join(map(str, budget))} epochs per run; seed(s): {', '.join(map(str, seeds))}.", "",
              "## Runs", "", tables["runs"], "",
              "## Teachers and students", "", tables["teacher_student"], "",
              "## Deployment: ONNX export and efficiency", "",
              "Every run's inference form is exported to ONNX (`results/runs/<run>/model.onnx`) and checked against "
              "PyTorch on the whole test split.", "", tables["efficiency"], "",
              "## Test accuracy per epoch", "", "![test accuracy](figures/test_accuracy.png)", "",
              *_seed000_section(params, pairs, res, tables)]
    if params.report.seed001:
        gaps = seed001.loss_curves_figure(params, res, figures / "seed001_loss_curves.png")
        report += _seed001_section(params, tables, gaps)
    if params.report.seed002:
        seed002.accuracy_params_figure(params, res, figures / "seed002_accuracy_params.png")
        seed002.prediction_figure(params, res, figures / "seed002_predictions.png")
        report += _seed002_section(params, tables)
    report += seed002_dense.write(params)
    if study:
        seed003.curves_figure(study, figures / "seed003_curves.png")
        report += _seed003_section(params, study, tables)
    atomic_write_text(RESULTS / "report.md", "\n".join(report))


def _seed000_section(params: Params, pairs: list, res: Results, tables: dict) -> list[str]:
    if not pairs:
        return []
    acb = [res.by_run[n]["fuse"] for n, r in params.runs.items() if r.block_type == "acb"]
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


def _recipe_line(params: Params, name: str) -> str:
    run = params.written[name]
    aug = run.augment
    parts = [f"{run.optimizer.name} lr {run.optimizer.lr:g} wd {run.optimizer.weight_decay:g}",
             (f"{run.schedule.warmup_epochs:g}-epoch linear warm-up, then " if run.schedule.warmup_epochs else "")
             + run.schedule.name,
             f"crop pad {aug.crop_padding}" if aug.crop_padding else "", "flip" if aug.hflip else "",
             "AutoAugment" if aug.autoaugment else "", "colour jitter" if aug.color_jitter else "",
             f"random erasing p {aug.random_erasing.p:g}" if aug.random_erasing else "",
             f"mixup {run.mix.mixup_alpha:g} / cutmix {run.mix.cutmix_alpha:g}" if run.mix else "",
             f"label smoothing {run.label_smoothing:g}" if run.label_smoothing else "",
             f"KD alpha {run.distill.alpha:g}, T {run.distill.temperature:g}" if run.distill else "",
             f"{run.epochs} epochs, batch {run.batch_size}"]
    return f"`{name}`: " + ", ".join(p for p in parts if p)


def _seed001_section(params: Params, tables: dict, gaps: dict) -> list[str]:
    v1, v2 = params.report.seed001.v1, params.report.seed001.v2
    return ["## Seed 001: one compact student, two recipes", "",
            "The seed's columns are its CIFAR-100 numbers (EfficientNetV2-L teacher, EfficientNetV2-S student, 200 "
            "epochs), for reference only where the data and models differ. Recipes:", "",
            f"- version 1, {_recipe_line(params, v1)}", f"- version 2, {_recipe_line(params, v2)}", "",
            "### Table 4: version 1", "", tables["seed001_table4"], "",
            "### Table 6: version 2", "", tables["seed001_table6"], "",
            "### Table 7: version 1 vs version 2", "", tables["seed001_table7"], "",
            "### Table 8: efficiency", "", tables["seed001_table8"], "",
            "### Training and validation loss", "",
            "Training loss is the objective the student minimised (KD and label terms on augmented, mixed batches); "
            "validation loss is cross-entropy on the test split. Generalisation gap at the last epoch (validation "
            f"minus training): version 1 {gaps['v1']:+.2f}, version 2 {gaps['v2']:+.2f} (seed 001: 0.73 and 0.15).",
            "", "![seed 001 loss curves](figures/seed001_loss_curves.png)", ""]


def _seed002_section(params: Params, tables: dict) -> list[str]:
    chain = params.chains[params.report.seed002.chain]
    return ["## Seed 002: distillation chains (classification)", "",
            f"Chain `{params.report.seed002.chain}`: {' -> '.join(chain)}; every student also trained from scratch "
            "on its own recipe. The seed's columns are its CIFAR-100 numbers (ResNet101 -> MobileNetV2 -> "
            "MobileNetV2 0.5x, 200 epochs), for reference only where data and models differ. Parameters are counted "
            "as deployed (ACB runs fused).", "",
            "### Task 1: distilled vs scratch", "", tables["seed002_task1"], "",
            "### Task 3: generations", "", tables["seed002_task3"], "",
            "![accuracy vs parameters](figures/seed002_accuracy_params.png)", "",
            "### Predictions", "",
            "Test images with the top-3 classes of the teacher, the student trained from scratch and the distilled "
            "student; images where the students disagree come first.", "",
            "![predictions](figures/seed002_predictions.png)", ""]


def _seed003_section(params: Params, study: seed003.Study, tables: dict) -> list[str]:
    run = params.written[params.report.seed003.runs[0]]
    return ["## Seed 003: StableKD", "",
            f"Teacher `{study.teacher}` ({cell(study.res.acc(study.teacher))}%), student `{run.model}` (width "
            f"{run.width}) on `{run.dataset}`, seed {run.seed}. StableKD-k/n starts from k blocks and recomposes n "
            "times; each of its stages is a checkpoint and a DAG node. The seed's columns are its CIFAR-100 "
            "ResNet34 -> ResNet18 numbers, for reference only.", "",
            "### Table 5: accuracy per epoch budget", "", tables["seed003_table5"], "",
            "### Table 2: data efficiency (share of every class of the training set)", "", tables["seed003_table2"], "",
            "### Table 4: decomposition ablation", "", tables["seed003_table4"], "",
            "### Table 7: training time per epoch", "",
            "Measured in the pipeline's own training runs (same pair, batch and machine; evaluation excluded).", "",
            tables["seed003_table7"], "",
            "![seed 003 curves](figures/seed003_curves.png)", ""]
