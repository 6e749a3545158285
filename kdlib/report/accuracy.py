"""Test accuracy per epoch of every written run, in one figure."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import pandas as pd

from kdlib.config import Params
from kdlib.report.results import Results
from kdlib.report.studies import link

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend first)


def accuracy_figure(params: Params, res: Results, path: Path) -> None:
    """Test accuracy per epoch of every written run, averaged over its seeds."""
    fig, ax = plt.subplots(figsize=(9, 5))
    for name in params.written:
        curves = pd.concat([res.by_run[r]["history"].set_index("epoch")["test_acc"] for r in res.members(name).values()],
                           axis=1).mean(axis=1).dropna()  # the epochs tested (runs.<name>.evaluation.every)
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


def write(params: Params, res: Results, outputs: dict[str, Path]) -> list[str]:
    accuracy_figure(params, res, outputs["figure"])
    return ["## Test accuracy per epoch", "", f"![test accuracy]({link(params, outputs['figure'])})", ""]
