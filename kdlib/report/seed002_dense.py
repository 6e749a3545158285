"""Seed 002, dense tasks (Task 2): each experiment's table in the seed's form and its figure.

Super-resolution: bicubic, the student without and with KD, the teacher, scored on the held-out images.
Edges: teacher, scratch and distilled student, Dice at the seed's checkpoints (epochs 5, 10 and 15 of 15, here
the same thirds of each run's budget) and the ODS F-measure at the end.
"""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import pandas as pd
import torch
from tabulate import tabulate

from kdlib.config import DENSE_ROLES, Params, SRExperiment
from kdlib.dense.degrade import upscale_bicubic
from kdlib.dense.image_metrics import sr_scores
from kdlib.report.results import Results, write_table
from kdlib.report.studies import link

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend first)

PUBLISHED = "seed 002"
SEED_SR = {"bicubic": "-", "scratch": "23.02", "kd": "25.79", "teacher": "27.26"}  # PSNR (dB), SwinIR teacher
SEED_EDGES = {"teacher": ("0.6625", "0.7101", "0.7270"), "scratch": ("0.6125", "0.7076", "0.7047"),
              "kd": ("0.6373", "0.6773", "0.7226")}  # Dice at epochs 5, 10, 15
LABELS = {"teacher": "teacher", "scratch": "student (no KD)", "kd": "student (KD)"}


class Experiment:
    """One dense experiment's outputs, read once."""

    def __init__(self, params: Params, name: str):
        self.name, self.exp = name, params.dense[name]
        data = params.layout.dense_data_dir(name)
        self.meta = json.loads((data / "meta.json").read_text())
        self.test = torch.load(data / "test.pt", weights_only=True)
        self.metrics, self.history, self.outputs, self.notes = {}, {}, {}, {}
        for role in DENSE_ROLES:
            folder = params.layout.dense_run_dir(name, role)
            self.metrics[role] = json.loads((folder / "metrics.json").read_text())
            self.history[role] = pd.read_csv(folder / "history.csv")
            blob = torch.load(folder / "predictions.pt", weights_only=True)
            self.outputs[role] = blob.pop("outputs")
            self.notes[role] = blob  # how they were made (the SR student's perceptual network)

    def model(self, role: str) -> str:
        net = self.exp.net(role)
        return net.model if isinstance(self.exp, SRExperiment) else f"U-Net {net.encoder}"

    def recipe_line(self) -> str:
        t, s = self.exp.training, self.exp.student
        return (f"{self.meta['description']}. Teacher {self.model('teacher')} {self.exp.teacher.epochs} epochs, "
                f"students {self.model('kd')} {s.epochs} epochs; Adam lr {t.lr:g}"
                f"{f' (ReduceLROnPlateau, patience {t.plateau_patience})' if t.plateau_patience is not None else ''}, "
                f"batch {t.batch_size}, seed {t.seed}.")


def _params(n: int) -> str:
    return f"{n / 1e6:.3f}M" if n >= 1e6 else f"{n / 1e3:.1f}k"


def bicubic_scores(e: Experiment) -> dict:
    scale = e.exp.data.scale
    scores = [sr_scores(upscale_bicubic(lr[None].float() / 255, scale), hr[None].float() / 255, scale)
              for lr, hr in zip(e.test["lr"], e.test["hr"])]
    return pd.DataFrame(scores).mean().to_dict()


def sr_table(e: Experiment) -> str:
    rows = []
    for role in ("bicubic", "scratch", "kd", "teacher"):
        s = bicubic_scores(e) if role == "bicubic" else e.metrics[role]["final"]
        size = _params(e.metrics[role]["params"]) if role != "bicubic" else "-"
        label, model = ("bicubic", "-") if role == "bicubic" else (LABELS[role], e.model(role))
        rows.append([label, model, size, f"{s['psnr_y']:.2f}", f"{s['ssim_y']:.4f}", f"{s['psnr_rgb']:.2f}",
                     SEED_SR[role]])
    d = e.exp.distill
    caption = (f"_{e.recipe_line()} Scores on the held-out image(s), x{e.exp.data.scale}: PSNR and SSIM on the Y "
               f"channel (BT.601) and PSNR on RGB, {e.exp.data.scale} border pixels cropped, outputs rounded to 8 bit. "
               f"KD: L1 + {d.feature_weight:g} x feature L2 + {d.perceptual_weight:g} x perceptual "
               f"({e.notes['kd'].get('perceptual', '-')}, {d.perceptual_layer}). The seed's column: its PSNR "
               "(SwinIR teacher, 160px patches of Motorcycle and Astronaut, 20 epochs)._")
    return tabulate(rows, headers=["method", "model", "params", "PSNR-Y (dB)", "SSIM-Y", "PSNR-RGB (dB)",
                                   f"{PUBLISHED} PSNR (dB)"], tablefmt="github", disable_numparse=True) + \
        "\n\n" + caption


def checkpoint_epochs(epochs: int) -> list[int]:
    """The seed's epochs 5, 10, 15 of 15 as thirds of another budget."""
    return [max(1, round(epochs * k / 3)) for k in (1, 2, 3)]


def edge_table(e: Experiment) -> str:
    budgets = {e.exp.net(role).epochs for role in DENSE_ROLES}
    same = len(budgets) == 1
    headers = [f"Dice ep. {k}" for k in checkpoint_epochs(budgets.pop())] if same else \
        ["Dice at 1/3", "Dice at 2/3", "Dice at end"]
    rows = []
    for role in ("teacher", "scratch", "kd"):
        history = e.history[role].set_index("epoch")
        dices = [f"{history.loc[k, 'dice']:.4f}" for k in checkpoint_epochs(e.exp.net(role).epochs)]
        final = e.metrics[role]["final"]
        rows.append([LABELS[role], e.model(role), _params(e.metrics[role]["params"]), *dices,
                     f"{final['ods_f']:.4f}", " / ".join(SEED_EDGES[role])])
    d = e.exp.distill
    caption = (f"_{e.recipe_line()} Dice of the 0.5-thresholded maps, mean over the {e.meta['num_test']} held-out "
               f"images; ODS F: best dataset-wide F over 99 thresholds, edges matched within 2 pixels, no thinning. "
               f"KD: {1 - d.alpha:g} x weighted BCE (pos_weight {d.pos_weight:g}) + {d.alpha:g} x MSE of the sigmoid "
               "maps. The seed's column: its Dice at epochs 5 / 10 / 15 (BSDS500, 256x256)._")
    return tabulate(rows, headers=["method", "model", "params", *headers, "ODS F", f"{PUBLISHED} Dice (ep. 5 / 10 / 15)"],
                    tablefmt="github", disable_numparse=True) + "\n\n" + caption


def _window(hr: torch.Tensor, size: int) -> tuple[int, int]:
    """Top-left of the size x size HR window with the most detail (gradient energy), where SR differs most."""
    grey = hr.float().mean(0)
    energy = (grey.diff(dim=0)[:, :-1] ** 2 + grey.diff(dim=1)[:-1] ** 2)[None, None]
    pooled = torch.nn.functional.avg_pool2d(energy, size - 1, stride=max(1, size // 4))
    index = int(pooled.flatten().argmax())
    stride = max(1, size // 4)
    return (index // pooled.shape[-1]) * stride, (index % pooled.shape[-1]) * stride


def sr_figure(e: Experiment, path: Path, size: int = 96) -> None:
    """A detailed crop of the first held-out image: input, bicubic, the three networks, ground truth."""
    hr, lr, scale = e.test["hr"][0], e.test["lr"][0], e.exp.data.scale
    size = min(size, *hr.shape[-2:])
    top, left = _window(hr, size)
    bicubic = (upscale_bicubic(lr[None].float() / 255, scale)[0] * 255).round().to(torch.uint8)
    panels = [("input (LR, nearest)", lr.repeat_interleave(scale, -1).repeat_interleave(scale, -2)),
              ("bicubic", bicubic), *((f"{LABELS[r]}\n{e.metrics[r]['final']['psnr_y']:.2f} dB", e.outputs[r][0])
                                      for r in ("scratch", "kd", "teacher")), ("ground truth", hr)]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.3 * len(panels), 2.7))
    for ax, (title, image) in zip(axes, panels):
        ax.imshow(image[:, top:top + size, left:left + size].permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.set_axis_off()
    fig.suptitle(f"x{scale} super-resolution, held-out '{e.test['names'][0]}' (PSNR-Y over the whole image)",
                 fontsize=9)
    _save(fig, path)


def edge_figure(e: Experiment, path: Path) -> None:
    """Held-out images: input, ground truth, and the edge probability maps of the three networks."""
    count = len(e.outputs["teacher"])
    fig, axes = plt.subplots(count, 5, figsize=(10, 2.1 * count), squeeze=False)
    for i, row in enumerate(axes):
        panels = [("input", e.test["images"][i].permute(1, 2, 0).numpy(), None),
                  ("ground truth", e.test["edges"][i].numpy(), "gray"),
                  *((LABELS[r].replace("student (KD)", "distilled student"), e.outputs[r][i].numpy(), "gray")
                    for r in ("teacher", "scratch", "kd"))]
        for ax, (title, image, cmap) in zip(row, panels):
            ax.imshow(image, cmap=cmap, vmin=0 if cmap else None, vmax=(1 if title == "ground truth" else 255)
                      if cmap else None, interpolation="nearest")
            ax.set_title(title if i == 0 else "", fontsize=8)
            ax.set_axis_off()
    fig.suptitle(f"Edge detection, held-out images of '{e.name}' (sigmoid maps)", fontsize=9)
    _save(fig, path)


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(params: Params, res: Results, outputs: dict[str, Path]) -> list[str]:
    """Every dense experiment's table and figure (`res`, the classification runs, unused); returns the report
    section."""
    section = ["## Seed 002: dense tasks", "",
               "Each experiment trains a teacher, a student without KD and the same student with KD on the same "
               "data and budget; the seed's columns are its published numbers, for reference only where data and "
               "models differ.", ""]
    for name in params.dense:
        e = Experiment(params, name)
        table_file, figure_file = outputs[f"{name}.table"], outputs[f"{name}.figure"]
        sr = isinstance(e.exp, SRExperiment)
        text = sr_table(e) if sr else edge_table(e)
        write_table(table_file, text)
        (sr_figure if sr else edge_figure)(e, figure_file)
        title = "super-resolution" if sr else "edge detection"
        section += [f"### `{name}`: {title}", "", text, "", f"![{name}]({link(params, figure_file)})", ""]
    return section
