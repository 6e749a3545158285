"""The training loop: seeded epochs, exact resume from last.pt, per-epoch history, a NaN guard.

A StableKD run trains in stages, one call (one DAG node) each: stage c continues from stage c - 1's checkpoint
stage<c-1>.pt and leaves stage<c>.pt, and the last stage leaves the model like any other run.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import time

import pandas as pd
import torch
from tqdm import tqdm

from kdlib.config import Params, ancestors, stream_name
from kdlib.data.prepared import test_loader
from kdlib.data.stream import TrainingStream, run_files
from kdlib.distill import teacher_outputs
from kdlib.distill.distiller import Distiller
from kdlib.distill.stage_plan import stage_epochs
from kdlib.engine import distributed
from kdlib.atomic import atomic_torch_save, atomic_write_text
from kdlib.checkpoint_io import read_checkpoint
from kdlib.engine.checkpoint import inference_model, save_model, teacher_checkpoint
from kdlib.engine.evaluate import evaluate
from kdlib.counting import count_parameters
from kdlib.engine.optim import build_optimizer, build_scheduler
from kdlib.engine.precision import autocast, grad_scaler
from kdlib.errors import KDError
from kdlib.models.build import build_model

log = logging.getLogger("kdlib")


STAGE_FORMAT = "kdlib-stage-1"


def fingerprint(params: Params, name: str, stage: int | None = None) -> str:
    """Hash of everything that determines a run's result, or that of StableKD stage `stage` (not the last);
    a last.pt or stage checkpoint with another hash is stale.

    Covers the run's config (for a stage, what that stage depends on), its teachers' configs, the dataset
    spec, and the bytes of the prepared data, of the teacher checkpoint (or of the record of the teacher outputs it
    replays) and of the previous stage's checkpoint (which change when the code that makes them changes).
    """
    run = params.runs[name]
    chain = [run.recipe(stage), *(params.runs[n].recipe() for n in ancestors(params, name))]
    files = [params.layout.dataset_dir(run.dataset) / f for f in ("train.pt", "test.pt")]
    if run.caches_teacher():  # its record holds the teacher checkpoint's hash
        files.append(params.layout.teacher_outputs_dir(stream_name(params, name)) / "stream.json")
    elif run.teacher:
        files.append(teacher_checkpoint(params, name))
    previous = len(stage_epochs(run)) - 1 if stage is None else stage
    if previous:
        files.append(stage_checkpoint(params, name, previous - 1))
    blob = json.dumps({"dataset": params.datasets[run.dataset].model_dump(mode="json"), "runs": chain,
                       "stage": stage, "files": [hashlib.sha256(f.read_bytes()).hexdigest() for f in files]},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def stage_checkpoint(params: Params, name: str, stage: int):
    return params.layout.run_dir(name) / f"stage{stage}.pt"


def rank_batch(params: Params, name: str, ranks: int) -> int:
    """Each of `ranks` processes' share of the run's batch (the global batch: the lr needs no scaling). A run that
    replays its teacher's logits trains on one process: they are those of one process's stream."""
    batch = params.runs[name].batch_size
    if ranks > 1 and params.runs[name].caches_teacher():
        raise KDError(f"runs.{name}: replays its teacher's logits, computed over one process's training stream; "
                      f"to train it on {ranks} processes set runs.{name}.teacher_cache: false")
    if batch % ranks:
        raise KDError(f"runs.{name}.batch_size: {batch} images per step cannot be shared equally by {ranks} "
                      f"training processes; use a multiple of {ranks}")
    return batch // ranks


def _resume(last, fp: str) -> dict | None:
    if not last.is_file():
        return None
    state = read_checkpoint(last)
    if state.get("fingerprint") != fp:
        log.info("%s was written for other params; starting afresh", last)
        return None
    return state


def _previous_stage(params: Params, name: str, stage: int) -> dict:
    """Stage `stage - 1`'s checkpoint, checked to be this run's, made with the params it depends on today."""
    path = stage_checkpoint(params, name, stage - 1)
    rerun = f"rerun stage {stage - 1} (`{params.command('stages/train.py', name, '--stage', str(stage - 1))}`, or the DAG)"
    if not path.is_file():
        raise KDError(f"{path}: not found; stage {stage} of run {name} continues from it: {rerun} first")
    state = read_checkpoint(path)
    if state.get("format") != STAGE_FORMAT or state.get("run") != name:
        raise KDError(f"{path}: not a StableKD stage checkpoint of run {name}; {rerun}")
    if state.get("fingerprint") != fingerprint(params, name, stage - 1):
        raise KDError(f"{path}: was trained with other params, data or teacher than run {name} has now; {rerun}")
    return state


def train(name: str, params: Params, device: torch.device, stage: int | None = None) -> dict:
    """Train run `name`, or one stage of a StableKD run (default: the last, which writes the model). Under
    torchrun, this process trains its share of every batch and rank 0 writes the files (see distributed)."""
    run = params.runs[name]
    rank, ranks, main = distributed.rank(), distributed.size(), distributed.is_main()
    share = rank_batch(params, name, ranks)
    plan = stage_epochs(run)
    stage = len(plan) - 1 if stage is None else stage
    if not 0 <= stage < len(plan):
        raise KDError(f"runs.{name}: has training stages 0 to {len(plan) - 1} (got stage {stage})")
    final = stage == len(plan) - 1
    previous = _previous_stage(params, name, stage) if stage > 0 else None  # checked before any work
    out = params.layout.run_dir(name)
    out.mkdir(parents=True, exist_ok=True)
    files = run_files(params, name)
    stream = TrainingStream(files, run, share, device, rank, ranks)
    torch.manual_seed(run.seed)
    try:
        model = build_model(run.model, files.num_classes, run.width, run.block_type, pretrained=run.pretrained)
    except KDError as e:
        raise KDError(f"runs.{name}: {e}") from None
    try:
        model.stage_shapes(tuple(files.train.images.shape[1:]))
    except RuntimeError as e:
        raise KDError(f"runs.{name}: model '{run.model}' cannot take the {files.meta['image_size']}x"
                      f"{files.meta['image_size']} images of dataset '{run.dataset}' ({str(e).splitlines()[0]}); "
                      "use a larger image_size or another model") from None
    model = model.to(device)
    teacher = None
    if run.caches_teacher():
        teacher = teacher_outputs.replayed_teacher(params, name, files.num_classes, stream.images)
    elif run.teacher:
        teacher = inference_model(params, run.teacher, files.num_classes).to(device)
    try:
        distiller = Distiller(model, teacher, run.distill, run.epochs, tuple(files.train.images.shape[1:]),
                              run.label_smoothing, stage).to(device)
    except KDError as e:
        raise KDError(f"runs.{name}: {e}") from None
    # The distiller's parameters: the student's and, for feature KD, the projector's (trained, never deployed);
    # blockwise methods' projectors are folded into the deployed student.
    optimizer = build_optimizer(run.optimizer, distiller.parameters())
    steps_per_epoch = math.ceil(len(files.train.labels) / run.batch_size)
    scheduler = build_scheduler(run.schedule, optimizer, run.optimizer.lr, run.epochs, steps_per_epoch, plan)
    scaler = grad_scaler(run.amp, device)

    last, fp, history = out / "last.pt", fingerprint(params, name, None if final else stage), []
    state, source = _resume(last, fp), last
    if state is None and previous is not None:
        state, source = previous, stage_checkpoint(params, name, stage - 1)
    if state is not None:
        try:
            distiller.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
        except (KeyError, RuntimeError, ValueError) as e:
            raise KDError(f"{source}: checkpoint does not fit run {name} ({type(e).__name__}); "
                          "delete it and rerun the stage that writes it") from None
        history = state["history"]
        log.info("%s: continuing after epoch %d from %s", name, len(history), source)
    step = TrainStep(name, distiller, distributed.data_parallel(distiller, device, distiller.projector is not None),
                     optimizer, scheduler, scaler, run, device,
                     stage_checkpoint(params, name, stage - 1) if stage else None)

    model = distiller.student  # in training form: with blockwise projectors, if any
    evaluation = test_loader(files, run.batch_size, rank, ranks)
    end = sum(plan[:stage + 1])
    for epoch in tqdm(range(len(history), end), initial=len(history), total=end,
                      desc=f"{name} epochs", disable=None if main else True, leave=False):
        if isinstance(teacher, teacher_outputs.ReplayedTeacher):
            teacher.start(epoch)
        lr = optimizer.param_groups[0]["lr"]
        started = time.perf_counter()
        stats = step.epoch(stream.epoch(epoch), epoch, last)
        trained = time.perf_counter()
        tested = (epoch + 1) % run.evaluation.every == 0 or epoch + 1 == end
        test = _evaluate_shared(model, evaluation, device) if tested else {"loss": math.nan, "acc": math.nan}
        blocks = {"stage": stage, "blocks": len(distiller.groups)} if distiller.groups is not None else {}
        history.append({"epoch": epoch + 1, "lr": lr, "alpha": distiller.alpha(epoch), **blocks, **stats,
                        "test_loss": test["loss"], "test_acc": test["acc"], "train_s": trained - started,
                        "time_s": time.perf_counter() - started})
        if main:
            atomic_torch_save({"epoch": epoch + 1, "fingerprint": fp, "model": distiller.state_dict(),
                               "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                               "scaler": scaler.state_dict(), "history": history}, last)
        log.info("%s epoch %d/%d  lr %.4g  train loss %.4f acc %.2f  %s", name, epoch + 1, run.epochs, lr,
                 stats["train_loss"], stats["train_acc"],
                 f"test loss {test['loss']:.4f} acc {test['acc']:.2f}" if tested else "(not tested)")

    if not final:
        if main:
            atomic_torch_save({"format": STAGE_FORMAT, "run": name, "stage": stage, "fingerprint": fp,
                               "model": distiller.state_dict(),
                               "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                               "scaler": scaler.state_dict(), "history": history}, stage_checkpoint(params, name, stage))
            last.unlink(missing_ok=True)
        return {"run": name, "stage": stage, "epochs": len(history), "test_acc": history[-1]["test_acc"]}
    model = distiller.deployable()
    best = max((row for row in history if not math.isnan(row["test_acc"])), key=lambda row: row["test_acc"])
    end_row = history[-1]
    # Numbers only (DVC metrics, compared across experiments); what the run is, is its recipe (results/<profile>/recipes).
    metrics = {"train_images": len(files.train.labels), "test_images": len(files.test.labels),
               "tested_every": run.evaluation.every, "seed": run.seed, "epochs": run.epochs,
               "params": count_parameters(model),
               "final": {"epoch": end_row["epoch"], "test_acc": end_row["test_acc"],
                         "test_loss": end_row["test_loss"], "train_loss": end_row["train_loss"]},
               "best": {"epoch": best["epoch"], "test_acc": best["test_acc"]}, "processes": ranks}
    if main:
        # With model.pt and metrics.json, never before: a run that stops (NaN, a kill) leaves the three files of the
        # last finished run together (the epochs so far are in last.pt and the log).
        _write_history(out, history)
        save_model(out / "model.pt", name, run, model, files.num_classes)
        atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))
        last.unlink(missing_ok=True)
    return metrics


def _evaluate_shared(model, loader, device) -> dict:
    """Test loss and top-1 (%) over the whole test split, each rank evaluating its share of it."""
    distributed.share_buffers(model)
    result = evaluate(model, loader, device)
    n = len(result["labels"])
    loss, correct, n = distributed.all_sum(
        [result["loss"] * n, (result["predictions"] == result["labels"]).sum().item(), n], device)
    return {"loss": loss / n, "acc": 100.0 * correct / n}


def _write_history(out, history: list[dict]) -> None:
    atomic_write_text(out / "history.csv", pd.DataFrame(history).to_csv(index=False))


class TrainStep:
    """One epoch of optimisation: mixed precision, the NaN guard, per-term loss sums."""

    def __init__(self, name: str, distiller, forward, optimizer, scheduler, scaler, run, device, stage_start=None):
        """`forward`: the distiller itself, or its data-parallel wrapper; `stage_start`: the checkpoint this
        StableKD stage continues from, if any."""
        self.name, self.run, self.device, self.stage_start = name, run, device, stage_start
        self.distiller, self.forward = distiller, forward
        self.optimizer, self.scheduler, self.scaler = optimizer, scheduler, scaler

    def epoch(self, batches, epoch: int, last) -> dict:
        """One pass over `batches`: (images, labels) on the device, mixed where the run mixes."""
        distiller, device = self.distiller, self.device
        distiller.train()
        sums, correct, seen = {}, 0, 0
        for batch, (x, y) in enumerate(tqdm(batches, desc=f"epoch {epoch + 1}", disable=None if distributed.is_main()
                                            else True, leave=False)):
            with autocast(self.run.amp, device, self.name):
                logits, losses = self.forward(x, y, epoch)
            loss = sum(losses.values())
            total = distributed.all_sum([loss.item()], device)[0]  # every rank stops if any rank's loss is bad
            if not math.isfinite(total):
                kept = last if last.is_file() else self.stage_start or "none yet: failed in the first epoch"
                raise KDError(f"run {self.name}: loss is {total} at epoch {epoch + 1}, batch {batch + 1}; "
                              f"stopped. The last good checkpoint is kept ({kept}); "
                              "lower the learning rate or check the data")
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            n = len(y)
            seen += n
            labels = y.argmax(1) if y.ndim == 2 else y  # a mixed image counts as its larger share's class
            correct += (logits.argmax(1) == labels).sum().item()
            for key, value in {"loss": loss, **losses}.items():
                sums[key] = sums.get(key, 0.0) + value.item() * n
        *totals, correct, seen = distributed.all_sum([*sums.values(), correct, seen], device)
        sums = dict(zip(sums, totals))
        return {"train_loss": sums.pop("loss") / seen, "train_acc": 100.0 * correct / seen,
                **{f"train_{k}": v / seen for k, v in sums.items()}}
