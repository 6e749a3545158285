"""Seed 003 (StableKD): accuracy per epoch budget (Table 5), data efficiency (Table 2), the decomposition
ablation (Table 4), time per epoch (Table 7) and the validation-accuracy curves (the stability figure, Figure 4).

`report.seed003.runs` in params.yaml lists the distilled runs; each one's scheme comes from its distill method,
its budget from its epochs and its data share from train_fraction, so a table cell is one run (mean ± std
over its seeds if it has several).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib
from tabulate import tabulate

from kdlib.config import Params
from kdlib.distill.methods import labels
from kdlib.distill.teacher_outputs import teacher_seconds_per_epoch
from kdlib.errors import KDError
from kdlib.report.results import Results, cell, write_table
from kdlib.report.studies import link

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend first)

LABELS = labels()  # method -> its name in the tables, from the methods table
# The seed's ResNet34 -> ResNet18 numbers on CIFAR-100, for reference (different data, models and budgets).
SEED_TABLE5 = {"KD": "72.49 / 76.19 / 78.07", "StableKD-5/0": "76.59 / 77.26 / 77.23",
               "StableKD-5/2": "78.45 / 79.39 / 79.46"}  # 20 / 60 / 200 epochs
SEED_TABLE4 = {"KD": "76.19", "KD + MSE": "77.15", "StableKD-5/2": "79.39"}  # 60 epochs
# Seconds per epoch on CIFAR-100 (one RTX 2080 Ti), Table 7.
SEED_TABLE7 = {"KD": 36.3, "AT": 37.5, "ST": 120.6, "NST": 60.0, "ReviewKD": 72.0, "DKD": 37.3, "StableKD-5/2": 35.4}


def scheme(params: Params, res: Results, name: str) -> str:
    """The method's label from the methods table (e.g. 'KD', 'ReviewKD', 'KD + MSE'), or 'StableKD-k/n' (k blocks
    at the start, n recompositions)."""
    distill = params.written[name].distill
    if distill.method != "stablekd":
        return LABELS[distill.method]
    return f"StableKD-{int(res.first(name)['history']['blocks'].iloc[0])}/{distill.recompositions}"


class Study:
    """The runs of report.seed003 indexed by (scheme, epochs, train fraction)."""

    def __init__(self, params: Params, res: Results):
        self.params, self.res = params, res
        self.cells: dict[tuple[str, int, float], str] = {}
        for name in params.report.seed003.runs:
            run = params.written[name]
            key = (scheme(params, res, name), run.epochs, run.train_fraction)
            if key in self.cells:
                raise KDError(f"report.seed003.runs: '{self.cells[key]}' and '{name}' are both {key[0]} with "
                              f"{key[1]} epochs on {100 * key[2]:.0f}% of the data; keep one")
            self.cells[key] = name
        self.schemes = list(dict.fromkeys(k[0] for k in self.cells))
        self.budgets = sorted({k[1] for k in self.cells if k[2] == 1.0})
        self.teacher = params.written[params.report.seed003.runs[0]].teacher

    def acc(self, scheme_: str, epochs: int, fraction: float = 1.0) -> str:
        name = self.cells.get((scheme_, epochs, fraction))
        return cell(self.res.acc(name)) if name else "-"

    @property
    def main_budget(self) -> int:
        """The largest full-data budget: the ablation, timing and curves use it."""
        return self.budgets[-1]


def budget_table(study: Study) -> str:
    """Table 5: test accuracy per scheme and epoch budget, on the full training set."""
    rows = [[s, *(study.acc(s, e) for e in study.budgets), SEED_TABLE5.get(s, "-")] for s in study.schemes
            if any((s, e, 1.0) in study.cells for e in study.budgets)]
    return tabulate(rows, headers=["scheme", *(f"{e} epochs" for e in study.budgets),
                                   "seed 003 (20 / 60 / 200 epochs)"], tablefmt="github", disable_numparse=True)


def data_table(study: Study) -> str:
    """Table 2: test accuracy per scheme and share of the training set, at the budget the subsets were run at."""
    subsets = [k for k in study.cells if k[2] < 1.0]
    if not subsets:
        return "_No runs on a share of the training set in this profile._"
    budget = max(k[1] for k in subsets)
    fractions = sorted({k[2] for k in study.cells if k[1] == budget})
    schemes = [s for s in study.schemes if any((s, budget, f) in study.cells for f in fractions if f < 1.0)]
    rows = [[s, *(study.acc(s, budget, f) for f in fractions)] for s in schemes]
    return tabulate(rows, headers=[f"scheme ({budget} epochs)", *(f"{100 * f:.0f}%" for f in fractions)],
                    tablefmt="github", disable_numparse=True)


def ablation_table(study: Study) -> str:
    """Table 4: KD, KD + MSE (feature alignment, no decomposition) and StableKD at the largest budget with a
    KD + MSE run (the main budget if there is none)."""
    picked = [s for s in study.schemes if s in ("KD", "KD + MSE") or s.startswith("StableKD")]
    budget = max((e for e in study.budgets if ("KD + MSE", e, 1.0) in study.cells), default=study.main_budget)
    rows = [["Acc. (%)", *(study.acc(s, budget) for s in picked)],
            ["seed 003 (60 epochs)", *(SEED_TABLE4.get(s, "-") for s in picked)]]
    return tabulate(rows, headers=[f"{budget} epochs", *picked], tablefmt="github", disable_numparse=True)


def time_table(study: Study) -> str:
    """Table 7: mean training seconds per epoch (evaluation excluded) per scheme, the ratio to KD, and the seed's
    ratio for the same scheme. A run that replays cached teacher logits is charged its teacher's forward passes per
    epoch, as the seed's runs pay them."""
    seconds = {}
    for s in study.schemes:
        name = study.cells.get((s, study.main_budget, 1.0))
        if name:
            first = study.res.first_name(name)
            cached = teacher_seconds_per_epoch(study.params, first) if study.params.runs[first].caches_teacher() else 0
            seconds[s] = float(study.res.first(name)["history"]["train_s"].mean()) + cached
    kd = seconds.get("KD")
    rows = [[s, f"{t:.2f}", f"{t / kd:.2f}" if kd else "-",
             f"{SEED_TABLE7[s] / SEED_TABLE7['KD']:.2f}" if s in SEED_TABLE7 else "-"] for s, t in seconds.items()]
    return tabulate(rows, headers=["scheme", f"s per epoch ({study.main_budget} epochs)", "x KD",
                                   "seed 003 x KD (CIFAR-100)"],
                    tablefmt="github", disable_numparse=True)


def curves_figure(study: Study, path: Path) -> None:
    """Figure 4 form: test accuracy after every epoch per scheme (main budget, full data, first seed); dotted
    lines mark StableKD's recompositions."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for s in study.schemes:
        name = study.cells.get((s, study.main_budget, 1.0))
        if not name:
            continue
        h = study.res.first(name)["history"]
        tested = h.dropna(subset=["test_acc"])
        line, = ax.plot(tested["epoch"], tested["test_acc"], marker="o", markersize=3, label=s)
        if "stage" in h and h["stage"].nunique() > 1:
            for epoch in h["epoch"][h["stage"].diff() > 0]:
                ax.axvline(epoch - 0.5, color=line.get_color(), linestyle=":", linewidth=1)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test top-1 (%)")
    ax.set_title(f"Validation accuracy per epoch, {study.main_budget}-epoch budget (teacher {study.teacher})",
                 fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(params: Params, res: Results, outputs: dict[str, Path]) -> list[str]:
    """Tables 5, 2, 4 and 7 and the curves; returns the report section."""
    study = Study(params, res)
    tables = {"table5": budget_table(study), "table2": data_table(study), "table4": ablation_table(study),
              "table7": time_table(study)}
    for key, text in tables.items():
        write_table(outputs[key], text)
    curves_figure(study, outputs["curves"])
    run = params.written[params.report.seed003.runs[0]]
    return ["## Seed 003: StableKD", "",
            f"Teacher `{study.teacher}` ({cell(study.res.acc(study.teacher))}%), student `{run.model}` (width "
            f"{run.width}) on `{run.dataset}`, seed {run.seed}. StableKD-k/n starts from k blocks and recomposes n "
            "times; each of its stages is a checkpoint and a DAG node. The seed's columns are its CIFAR-100 "
            "ResNet34 -> ResNet18 numbers, for reference only.", "",
            "### Table 5: accuracy per epoch budget", "", tables["table5"], "",
            "### Table 2: data efficiency (share of every class of the training set)", "", tables["table2"], "",
            "### Table 4: decomposition ablation", "", tables["table4"], "",
            "### Table 7: training time per epoch", "",
            "Measured in the pipeline's own training runs (same pair, batch and machine; evaluation excluded). Runs "
            "that replay cached teacher logits (KD, DKD) are charged the teacher's forward passes their cache stage "
            "timed, per epoch, as a run with a live teacher pays them.", "",
            tables["table7"], "",
            f"![seed 003 curves]({link(params, outputs['curves'])})", ""]
