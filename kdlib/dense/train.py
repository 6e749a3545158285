"""Training one role of a dense experiment: the teacher, the student without KD (`scratch`), or the student
distilled from the teacher (`kd`). Adam, seeded epochs, exact resume from last.pt, a NaN guard, per-epoch
held-out scores; leaves model.pt, metrics.json, history.csv and predictions.pt (held-out outputs for the figure).
"""
from __future__ import annotations

import hashlib
import json
import logging
import time

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from kdlib.config import EdgeExperiment, Params, SRExperiment
from kdlib.dense import data as dense_data
from kdlib.dense.edge_metrics import dice, ods_f
from kdlib.dense.image_metrics import sr_scores
from kdlib.dense.losses import edge_distillation, weighted_bce
from kdlib.dense.nets import build_net
from kdlib.dense.registry import PERCEPTUAL, resolve
from kdlib.distill.losses import feature_l2
from kdlib.atomic import atomic_torch_save, atomic_write_text
from kdlib.checkpoint_io import read_checkpoint
from kdlib.counting import count_flops, count_parameters
from kdlib.seeding import epoch_seed
from kdlib.errors import KDError

log = logging.getLogger("kdlib")
FORMAT = "kdlib-dense-1"
FIGURE_IMAGES = 4  # held-out edge maps kept for the figure
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # what smp's encoders expect


def model_path(params: Params, name: str, role: str):
    return params.layout.dense_run_dir(name, role) / "model.pt"


def load_net(params: Params, name: str, role: str, device: torch.device) -> nn.Module:
    """A role's trained network (eval mode, frozen), checked to be built as the params file builds it today."""
    exp, path = params.dense[name], model_path(params, name, role)
    blob = read_checkpoint(path)
    if blob.get("format") != FORMAT or blob.get("experiment") != name or blob.get("role") != role:
        raise KDError(f"{path}: not the {role} checkpoint of dense experiment '{name}'")
    if blob.get("recipe") != exp.recipe(role):
        raise KDError(f"{path}: was trained with other params than dense.{name} has now; rerun train_dense_{name}_{role}")
    net = build_net(name, exp, role)
    try:
        net.load_state_dict(blob["state_dict"])
    except (KeyError, RuntimeError) as e:
        raise KDError(f"{path}: weights do not fit the {role} network ({type(e).__name__}); "
                      f"rerun train_dense_{name}_{role}") from None
    return net.to(device).eval().requires_grad_(False)


class SuperResolution:
    """L1 to the HR image; with a teacher also the L2 between body features (the student's through a 1x1
    projector, dropped after training) and a VGG feature distance to the teacher's output (seed 002, Eq. 5-7)."""

    def __init__(self, exp: SRExperiment, model: nn.Module, teacher: nn.Module | None, device: torch.device):
        self.exp, self.model, self.teacher, self.device = exp, model, teacher, device
        self.projector = self.perceptual = None
        if teacher is not None:
            self.projector = nn.Conv2d(model.feature_channels, teacher.feature_channels, 1).to(device)
            # A VGG-16, imported by string: only a distilled student needs it (and depends on its code).
            self.perceptual = resolve(PERCEPTUAL)(exp.distill.perceptual_weights, exp.distill.perceptual_layer).to(device)

    def modules(self) -> list[nn.Module]:
        """What trains: the student and its projector (a checkpoint's `modules`, in this order)."""
        return [self.model] + ([self.projector] if self.projector is not None else [])

    def batches(self, train: dict, batch_size: int, generator: torch.Generator):
        order = torch.randperm(len(train["hr"]), generator=generator)
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            lr, hr = train["lr"][index].float() / 255, train["hr"][index].float() / 255
            # The 8 flips and rotations of a square patch, the same for its LR and HR versions.
            flips = torch.randint(0, 2, (3,), generator=generator).tolist()
            for do, op in zip(flips, (lambda t: t.flip(-1), lambda t: t.flip(-2), lambda t: t.transpose(-1, -2))):
                if do:
                    lr, hr = op(lr), op(hr)
            yield lr.to(self.device), hr.to(self.device)

    def losses(self, lr: torch.Tensor, hr: torch.Tensor) -> dict:
        if self.teacher is None:
            return {"l1": F.l1_loss(self.model(lr), hr)}
        sr, features = self.model.forward_features(lr)
        with torch.no_grad():
            target, target_features = self.teacher.forward_features(lr)
        d = self.exp.distill
        return {"l1": F.l1_loss(sr, hr), "feature": d.feature_weight * feature_l2(self.projector(features), target_features),
                "perceptual": d.perceptual_weight * self.perceptual(sr, target)}

    @torch.no_grad()
    def evaluate(self, test: dict) -> tuple[dict, list[torch.Tensor]]:
        """Held-out scores (mean over the images) and the 8-bit outputs."""
        self.model.eval()
        scores, outputs = [], []
        for lr, hr in zip(test["lr"], test["hr"]):
            sr = self.model(lr[None].float().div(255).to(self.device)).clamp(0, 1).cpu()
            target = hr[None].float() / 255
            scores.append({"val_loss": F.l1_loss(sr, target).item(), **sr_scores(sr, target, self.exp.data.scale)})
            outputs.append((sr[0] * 255).round().to(torch.uint8))
        self.model.train()
        return pd.DataFrame(scores).mean().to_dict(), outputs

    def input_shape(self, test: dict) -> tuple[int, ...]:
        return tuple(test["lr"][0].shape)

    def summary(self) -> dict:
        return {"perceptual": self.perceptual.source} if self.perceptual is not None else {}


class EdgeDetection:
    """Weighted BCE to the boundary map; with a teacher (1 - alpha) of it plus alpha times the MSE between the
    sigmoid maps (seed 002, Eq. 8-9)."""

    def __init__(self, exp: EdgeExperiment, model: nn.Module, teacher: nn.Module | None, device: torch.device):
        self.exp, self.model, self.teacher, self.device = exp, model, teacher, device
        self.mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

    def modules(self) -> list[nn.Module]:
        return [self.model]

    def _inputs(self, images: torch.Tensor) -> torch.Tensor:
        return (images.float() / 255 - self.mean) / self.std

    def batches(self, train: dict, batch_size: int, generator: torch.Generator):
        order = torch.randperm(len(train["images"]), generator=generator)
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            x, y = self._inputs(train["images"][index]), train["edges"][index][:, None].float()
            flip = torch.rand(len(index), generator=generator) < 0.5  # horizontal flips, image by image
            x[flip], y[flip] = x[flip].flip(-1), y[flip].flip(-1)
            yield x.to(self.device), y.to(self.device)

    def losses(self, x: torch.Tensor, y: torch.Tensor) -> dict:
        logits = self.model(x)
        d = self.exp.distill
        if self.teacher is None:
            return {"bce": weighted_bce(logits, y, d.pos_weight)}
        with torch.no_grad():
            target = self.teacher(x)
        return edge_distillation(logits, target, y, d.alpha, d.pos_weight)

    @torch.no_grad()
    def evaluate(self, test: dict) -> tuple[dict, list[torch.Tensor]]:
        self.model.eval()
        probs, losses = [], []
        for start in range(0, len(test["images"]), self.exp.training.batch_size):
            x = self._inputs(test["images"][start:start + self.exp.training.batch_size]).to(self.device)
            y = test["edges"][start:start + len(x)][:, None].float()
            logits = self.model(x).cpu()
            losses.append(weighted_bce(logits, y, self.exp.distill.pos_weight).item() * len(x))
            probs.append(torch.sigmoid(logits))
        self.model.train()
        prob, edges = torch.cat(probs), test["edges"][:, None]
        best = ods_f(prob, edges)
        scores = {"val_loss": sum(losses) / len(prob), "dice": dice(prob, edges), "ods_f": best["f"],
                  "ods_threshold": best["threshold"]}
        return scores, [(p[0] * 255).round().to(torch.uint8) for p in prob[:FIGURE_IMAGES]]

    def input_shape(self, test: dict) -> tuple[int, ...]:
        return tuple(test["images"].shape[1:])

    def summary(self) -> dict:
        return {}


TASKS = {"super_resolution": SuperResolution, "edges": EdgeDetection}


def fingerprint(params: Params, name: str, role: str) -> str:
    """Hash of what determines a role's result: its recipe and the bytes of the data (and of the teacher)."""
    files = [params.layout.dense_data_dir(name) / f for f in ("train.pt", "test.pt")]
    if role == "kd":
        files.append(model_path(params, name, "teacher"))
    blob = json.dumps({"recipe": params.dense[name].recipe(role), "role": role,
                       "files": [hashlib.sha256(f.read_bytes()).hexdigest() for f in files]}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def train(params: Params, name: str, role: str, device: torch.device) -> dict:
    exp = params.dense[name]
    train_set, test_set, meta = dense_data.load(params.layout.dense_data_dir(name))
    teacher = load_net(params, name, "teacher", device) if role == "kd" else None  # checked before any work
    torch.manual_seed(exp.training.seed)
    model = build_net(name, exp, role).to(device)
    task = TASKS[exp.task](exp, model, teacher, device)
    optimizer = torch.optim.Adam([p for m in task.modules() for p in m.parameters()], lr=exp.training.lr)
    patience = exp.training.plateau_patience
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=patience) if patience is not None else None
    out = params.layout.dense_run_dir(name, role)
    out.mkdir(parents=True, exist_ok=True)
    last, fp, history = out / "last.pt", fingerprint(params, name, role), []
    state = read_checkpoint(last) if last.is_file() else None
    if state is not None and state.get("fingerprint") == fp:
        for module, weights in zip(task.modules(), state["modules"]):
            module.load_state_dict(weights)
        optimizer.load_state_dict(state["optimizer"])
        if plateau is not None:
            plateau.load_state_dict(state["plateau"])
        history = state["history"]
        log.info("dense %s %s: continuing after epoch %d from %s", name, role, len(history), last)

    epochs = exp.net(role).epochs
    for epoch in tqdm(range(len(history), epochs), initial=len(history), total=epochs,
                      desc=f"{name} {role} epochs", disable=None, leave=False):
        seed = epoch_seed(exp.training.seed, epoch)
        torch.manual_seed(seed)
        lr, started, sums, seen = optimizer.param_groups[0]["lr"], time.perf_counter(), {}, 0
        for batch, (x, y) in enumerate(task.batches(train_set, exp.training.batch_size,
                                                    torch.Generator().manual_seed(seed))):
            losses = task.losses(x, y)
            loss = sum(losses.values())
            if not torch.isfinite(loss):
                kept = last if last.is_file() else "none yet: failed in the first epoch"
                raise KDError(f"dense {name} {role}: loss is {loss.item()} at epoch {epoch + 1}, batch {batch + 1}; "
                              f"stopped. The last good checkpoint is kept ({kept}); lower training.lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(x)
            for key, value in {"loss": loss, **losses}.items():
                sums[key] = sums.get(key, 0.0) + value.item() * len(x)
        train_s = time.perf_counter() - started
        scores, _ = task.evaluate(test_set)
        if plateau is not None:
            plateau.step(scores["val_loss"])
        history.append({"epoch": epoch + 1, "lr": lr, **{f"train_{k}": v / seen for k, v in sums.items()},
                        **scores, "train_s": train_s})
        atomic_torch_save({"fingerprint": fp, "modules": [m.state_dict() for m in task.modules()],
                           "optimizer": optimizer.state_dict(),
                           "plateau": plateau.state_dict() if plateau is not None else None, "history": history}, last)
        log.info("dense %s %s epoch %d/%d  lr %.3g  train loss %.4f  %s", name, role, epoch + 1, epochs, lr,
                 sums["loss"] / seen, "  ".join(f"{k} {v:.4f}" for k, v in scores.items()))

    scores, outputs = task.evaluate(test_set)
    atomic_torch_save({"format": FORMAT, "experiment": name, "role": role, "task": exp.task,
                       "recipe": exp.recipe(role), "state_dict": model.state_dict()}, out / "model.pt")
    # The held-out outputs, and what the report says about how they were made.
    atomic_torch_save({"outputs": outputs, **task.summary()}, out / "predictions.pt")
    atomic_write_text(out / "history.csv", pd.DataFrame(history).to_csv(index=False))
    # Numbers only (DVC metrics); FLOPs for one held-out input at its size.
    metrics = {"epochs": epochs, "seed": exp.training.seed, "params": count_parameters(model),
               "flops": count_flops(model, task.input_shape(test_set)), "final": scores}
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    last.unlink(missing_ok=True)
    return metrics
