"""Seed 001 (one teacher, a compact student, two recipes): Tables 4, 6, 7 and 8 and the loss-curves figure.

`report.seed001` in params.yaml names the version-1 and version-2 students; each one's teacher heads its table.
Gaps are student minus teacher (negative: below the teacher), retention is 100 x student / teacher.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib
from tabulate import tabulate

from kdlib.config import Params
from kdlib.report.results import Results, Values, cell, combine, mean, write_table
from kdlib.report.studies import link

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend first)

PUBLISHED = "seed 001"  # its CIFAR-100 numbers: EfficientNetV2-L teacher, EfficientNetV2-S student, 200 epochs
SEED_VERSIONS = {"v1": (75.75, 72.36, -3.39), "v2": (75.76, 74.21, -1.55)}  # teacher, student, gap
SEED_COMPARISON = [("72.36", "74.21", "+1.85"), ("-3.39", "-1.55", "54% reduction"), ("95.5", "98.0", "+2.5")]
SEED_EFFICIENCY = [("~118M", "~21M", "5.6x smaller"), ("75.76", "74.21", "98.0% retained")]


def _gap(res: Results, student: str, teacher: str) -> Values:
    return combine(lambda s, t: s - t, res.acc(student), res.acc(teacher))


def _retention(res: Results, student: str, teacher: str) -> Values:
    return combine(lambda s, t: 100 * s / t, res.acc(student), res.acc(teacher))


def version_table(params: Params, res: Results, version: str) -> str:
    """Tables 4 (version 1) and 6 (version 2): teacher and student accuracy, the student's gap from the teacher."""
    student = getattr(params.report.seed001, version)
    teacher = params.written[student].teacher
    t, s, g = SEED_VERSIONS[version]
    rows = [["Teacher", teacher, params.written[teacher].model, cell(res.acc(teacher)), "—", f"{t:.2f}", "—"],
            ["Student", student, params.written[student].model, cell(res.acc(student)),
             cell(_gap(res, student, teacher), "+.2f"), f"{s:.2f}", f"{g:+.2f}"]]
    return tabulate(rows, headers=["role", "run", "model", "top-1 (%)", "gap from teacher (pts)",
                                   f"{PUBLISHED} top-1", f"{PUBLISHED} gap"], tablefmt="github", disable_numparse=True)


def comparison_table(params: Params, res: Results) -> str:
    """Table 7: accuracy, gap and retention of both versions, and what version 2 changed."""
    v1, v2 = params.report.seed001.v1, params.report.seed001.v2
    t1, t2 = params.written[v1].teacher, params.written[v2].teacher
    gap1, gap2 = _gap(res, v1, t1), _gap(res, v2, t2)
    keep1, keep2 = _retention(res, v1, t1), _retention(res, v2, t2)
    reduction = gap_change(mean(gap1), mean(gap2)) if gap1 and gap2 else "-"
    rows = [["Accuracy (%)", cell(res.acc(v1)), cell(res.acc(v2)),
             cell(combine(lambda a, b: b - a, res.acc(v1), res.acc(v2)), "+.2f"), *SEED_COMPARISON[0]],
            ["Gap from teacher (pts)", cell(gap1, "+.2f"), cell(gap2, "+.2f"), reduction, *SEED_COMPARISON[1]],
            ["Teacher retention (%)", cell(keep1, ".1f"), cell(keep2, ".1f"),
             cell(combine(lambda a, b: b - a, keep1, keep2), "+.1f"), *SEED_COMPARISON[2]]]
    return tabulate(rows, headers=["metric", f"version 1 ({v1})", f"version 2 ({v2})", "improvement",
                                   f"{PUBLISHED} v1", f"{PUBLISHED} v2", f"{PUBLISHED} improvement"],
                    tablefmt="github", disable_numparse=True)


def gap_change(gap1: float, gap2: float) -> str:
    """How version 2's gap compares with version 1's. A ratio of two small differences is unstable seed by
    seed, so it is taken from the means."""
    if gap1 * gap2 <= 0:
        return "n/a: the mean gap is zero or changes sign"
    change = 1 - gap2 / gap1
    return f"{100 * change:.0f}% reduction of the mean gap" if change >= 0 else f"mean gap grew {-100 * change:.0f}%"


def efficiency_table(params: Params, res: Results) -> str:
    """Table 8: the version-2 student against its teacher, in parameters (as deployed) and accuracy."""
    student = params.report.seed001.v2
    teacher = params.written[student].teacher
    pt, ps = res.inference_params(teacher), res.inference_params(student)
    rows = [["Parameters", f"{pt / 1e6:.3f}M", f"{ps / 1e6:.3f}M", f"{pt / ps:.1f}x smaller", *SEED_EFFICIENCY[0]],
            ["Accuracy (%)", cell(res.acc(teacher)), cell(res.acc(student)),
             f"{cell(_retention(res, student, teacher), '.1f', '%')} retained", *SEED_EFFICIENCY[1]]]
    return tabulate(rows, headers=["metric", f"teacher ({teacher})", f"student ({student})", "ratio",
                                   f"{PUBLISHED} teacher", f"{PUBLISHED} student", f"{PUBLISHED} ratio"],
                    tablefmt="github", disable_numparse=True)


def loss_curves_figure(params: Params, res: Results, path: Path) -> dict[str, float]:
    """Training loss (the objective the student minimised, on augmented and mixed batches) and validation loss
    (cross-entropy on the test split) per epoch for both versions, first seed. Returns each version's
    generalisation gap at the last epoch, validation minus training loss."""
    gaps = {}
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, version in zip(axes, ("v1", "v2")):
        name = getattr(params.report.seed001, version)
        h = res.first(name)["history"]
        ax.plot(h["epoch"], h["train_loss"], marker="o", markersize=3, label="training loss")
        tested = h.dropna(subset=["test_loss"])
        ax.plot(tested["epoch"], tested["test_loss"], marker="o", markersize=3, label="validation loss")
        gaps[version] = float(h["test_loss"].iloc[-1] - h["train_loss"].iloc[-1])
        ax.set_title(f"version {version[1]} ({name}): final gap {gaps[version]:+.2f}", fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("loss")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return gaps


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


def write(params: Params, res: Results, outputs: dict[str, Path]) -> list[str]:
    """Tables 4, 6, 7 and 8 and the loss curves; returns the report section."""
    tables = {"table4": version_table(params, res, "v1"), "table6": version_table(params, res, "v2"),
              "table7": comparison_table(params, res), "table8": efficiency_table(params, res)}
    for key, text in tables.items():
        write_table(outputs[key], text)
    gaps = loss_curves_figure(params, res, outputs["loss_curves"])
    v1, v2 = params.report.seed001.v1, params.report.seed001.v2
    return ["## Seed 001: one compact student, two recipes", "",
            "The seed's columns are its CIFAR-100 numbers (EfficientNetV2-L teacher, EfficientNetV2-S student, 200 "
            "epochs), for reference only where the data and models differ. Recipes:", "",
            f"- version 1, {_recipe_line(params, v1)}", f"- version 2, {_recipe_line(params, v2)}", "",
            "### Table 4: version 1", "", tables["table4"], "",
            "### Table 6: version 2", "", tables["table6"], "",
            "### Table 7: version 1 vs version 2", "", tables["table7"], "",
            "### Table 8: efficiency", "", tables["table8"], "",
            "### Training and validation loss", "",
            "Training loss is the objective the student minimised (KD and label terms on augmented, mixed batches); "
            "validation loss is cross-entropy on the test split. Generalisation gap at the last epoch (validation "
            f"minus training): version 1 {gaps['v1']:+.2f}, version 2 {gaps['v2']:+.2f} (seed 001: 0.73 and 0.15).",
            "", f"![seed 001 loss curves]({link(params, outputs['loss_curves'])})", ""]
