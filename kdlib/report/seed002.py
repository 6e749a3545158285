"""Seed 002, classification (Tasks 1 and 3): a chain of ever smaller students, each distilled from the last.

`report.seed002.chain` names the chain. Task 1 is its first step (teacher, distilled student, the same student
trained from scratch); Task 3 is every generation. Compression is the teacher's parameter count over the
run's, both as deployed.
"""
from __future__ import annotations

import statistics
from pathlib import Path

import matplotlib
from tabulate import tabulate

from kdlib.config import Params, scratch_baseline
from kdlib.data.prepared import load_prepared
from kdlib.report.results import Results, cell, combine, mean, write_table
from kdlib.report.studies import link

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend first)
from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: E402

PUBLISHED = "seed 002"  # its CIFAR-100 numbers: ResNet101 (ImageNet-pretrained) -> MobileNetV2 -> MobileNetV2 0.5x
SEED_TASK1 = [("ResNet101", "79.91", "44.5M", "1x"), ("MobileNetV2 (distilled)", "69.02", "3.5M", "12.7x"),
              ("MobileNetV2 (scratch)", "61.03", "3.5M", "12.7x")]
SEED_TASK3 = [("79.91", "44.5M", "1x"), ("69.02", "2.35M", "19x"), ("67.87", "0.82M", "54x")]


def _chain(params: Params) -> list[str]:
    return params.chains[params.report.seed002.chain]


def _size(res: Results, name: str, reference: int) -> list[str]:
    n = res.inference_params(name)
    return [f"{n / 1e6:.3f}M", f"{reference / n:.1f}x"]


def task1_table(params: Params, res: Results) -> str:
    teacher, student = _chain(params)[:2]
    scratch = scratch_baseline(params.written, student)
    top = res.inference_params(teacher)
    rows = [["teacher", teacher, params.written[teacher].model, cell(res.acc(teacher)), *_size(res, teacher, top)],
            ["distilled", student, params.written[student].model, cell(res.acc(student)), *_size(res, student, top)]]
    if scratch:
        rows.append(["scratch", scratch, params.written[scratch].model, cell(res.acc(scratch)),
                     *_size(res, scratch, top)])
    rows = [row + list(published) for row, published in zip(rows, SEED_TASK1)]
    return tabulate(rows, headers=["role", "run", "model", "top-1 (%)", "params", "compression",
                                   f"{PUBLISHED} model", f"{PUBLISHED} top-1", f"{PUBLISHED} params",
                                   f"{PUBLISHED} compression"], tablefmt="github", disable_numparse=True)


def task3_table(params: Params, res: Results) -> str:
    chain = _chain(params)
    top = res.inference_params(chain[0])
    rows = []
    for generation, name in enumerate(chain, start=1):
        run = params.written[name]
        scratch = scratch_baseline(params.written, name) if run.teacher else None
        gain = cell(combine(lambda a, b: a - b, res.acc(name), res.acc(scratch)), "+.2f") if scratch else "-"
        published = SEED_TASK3[generation - 1] if generation <= len(SEED_TASK3) else ("-",) * 3
        rows.append([generation, name, run.model, run.width, run.teacher or "-", cell(res.acc(name)),
                     cell(res.acc(scratch)) if scratch else "-", gain, *_size(res, name, top), *published])
    return tabulate(rows, headers=["generation", "run", "model", "width", "teacher", "top-1 (%)", "scratch top-1 (%)",
                                   "KD gain (pts)", "params", "compression", f"{PUBLISHED} top-1",
                                   f"{PUBLISHED} params", f"{PUBLISHED} compression"],
                    tablefmt="github", disable_numparse=True)


def accuracy_params_figure(params: Params, res: Results, path: Path) -> None:
    """Top-1 against deployed parameters: the generations joined in order, each student's scratch twin beside
    it; error bars are the std over seeds where a run has several."""
    chain = _chain(params)
    fig, ax = plt.subplots(figsize=(6.5, 4.2))

    def point(name: str, **style):
        acc = res.acc(name)
        std = statistics.stdev(acc.values()) if len(acc) > 1 else 0.0
        x = res.inference_params(name)
        ax.errorbar(x, mean(acc), yerr=std, capsize=3, **style)
        ax.annotate(name, (x, mean(acc)), textcoords="offset points", xytext=(5, 5), fontsize=7)
        return x, mean(acc)

    path_xy = [point(name, fmt="o", color="tab:blue") for name in chain]
    ax.plot(*zip(*path_xy), color="tab:blue", label="distillation chain (generation 1, 2, ...)")
    scratches = [s for s in (scratch_baseline(params.written, n) for n in chain[1:]) if s]
    for i, name in enumerate(scratches):
        point(name, fmt="s", color="tab:orange", label="trained from scratch" if i == 0 else None)
    ax.set_xscale("log")
    ax.set_xticks(sorted({x for x, _ in path_xy}))  # one tick per model size
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1e6:.2f}M" if x >= 1e6 else f"{x / 1e3:.1f}k"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("parameters (deployed)")
    ax.set_ylabel("test top-1 (%)")
    ax.set_title(f"Accuracy vs parameters: chain '{params.report.seed002.chain}'", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def prediction_figure(params: Params, res: Results, path: Path, count: int = 5) -> None:
    """Test images with the top-3 classes and confidences of the teacher, the scratch student and the distilled
    student (Task 1's three runs, first seed). Images where the two students disagree come first."""
    teacher, student = _chain(params)[:2]
    runs = [("teacher", teacher), ("scratch", scratch_baseline(params.written, student)), ("distilled", student)]
    runs = [(role, name) for role, name in runs if name]
    tops = {role: {s["index"]: s for s in res.first(name)["samples"]["top3"]} for role, name in runs}
    shared = sorted(set.intersection(*(set(t) for t in tops.values())))
    students = [role for role, _ in runs if role != "teacher"]
    disagree = lambda i: len({tops[r][i]["classes"][0] for r in students}) > 1  # noqa: E731
    picks = (sorted(shared, key=lambda i: not disagree(i)))[:count]
    files = load_prepared(params.layout.dataset_dir(params.written[student].dataset))
    classes = files.meta["classes"]
    fig, axes = plt.subplots(len(picks), 1 + len(runs), figsize=(3 * (1 + len(runs)), 1.9 * len(picks)),
                             squeeze=False)
    for row, index in zip(axes, picks):
        label = tops[runs[0][0]][index]["label"]
        row[0].imshow(files.test.images[index].permute(1, 2, 0).numpy(), interpolation="nearest")
        row[0].set_title(f"test #{index}: {classes[label]}", fontsize=8)
        row[0].set_axis_off()
        for ax, (role, name) in zip(row[1:], runs):
            s = tops[role][index]
            names = [classes[c] for c in s["classes"]][::-1]
            colors = ["tab:green" if c == label else "tab:gray" for c in s["classes"]][::-1]
            # At positions, labelled: class names that read as numbers ("0", "1") would make a categorical axis.
            ax.barh(range(len(names)), [100 * p for p in s["probs"]][::-1], color=colors)
            ax.set_yticks(range(len(names)), names)
            ax.set_xlim(0, 100)
            ax.tick_params(labelsize=7)
            ax.set_title(f"{role} ({name})", fontsize=8)
    for ax in axes[-1][1:]:
        ax.set_xlabel("confidence (%), green = true class", fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(params: Params, res: Results, outputs: dict[str, Path]) -> list[str]:
    """Tasks 1 and 3, the accuracy-vs-parameters and prediction figures; returns the report section."""
    task1, task3 = task1_table(params, res), task3_table(params, res)
    write_table(outputs["task1"], task1)
    write_table(outputs["task3"], task3)
    accuracy_params_figure(params, res, outputs["accuracy_params"])
    prediction_figure(params, res, outputs["predictions"])
    chain = _chain(params)
    return ["## Seed 002: distillation chains (classification)", "",
            f"Chain `{params.report.seed002.chain}`: {' -> '.join(chain)}; every student also trained from scratch "
            "on its own recipe. The seed's columns are its CIFAR-100 numbers (ResNet101 -> MobileNetV2 -> "
            "MobileNetV2 0.5x, 200 epochs), for reference only where data and models differ. Parameters are counted "
            "as deployed (ACB runs fused).", "",
            "### Task 1: distilled vs scratch", "", task1, "",
            "### Task 3: generations", "", task3, "",
            f"![accuracy vs parameters]({link(params, outputs['accuracy_params'])})", "",
            "### Predictions", "",
            "Test images with the top-3 classes of the teacher, the student trained from scratch and the distilled "
            "student; images where the students disagree come first.", "",
            f"![predictions]({link(params, outputs['predictions'])})", ""]
