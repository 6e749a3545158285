"""Seed 000 performance targets, measured (not asserted): run `python benchmarks/seed000.py`.

For every ACB run in the params file: inference latency of the unfused ACB model, its fused deploy form
and the plain architecture (conv + BN), ms per batch; targets: fused / plain <= 1.05 (fusion costs
nothing at inference) and unfused / fused > 1 (what fusion saves).
For every distilled run: the time of one KD training step (kdlib's Distiller: student forward and
backward, teacher forward, losses, optimizer step) over the bare minimum (the same student step plus a
no-grad teacher forward, hand-written); target <= 1.05. Weights are random: timing does not depend on them.
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from tabulate import tabulate

from kdlib.config import load_params
from kdlib.distill.distiller import Distiller
from kdlib.engine.latency import alternating_median_ms, latency_ms
from kdlib.models.build import build_model
from kdlib.reparam.fusion import to_deploy


def latency_rows(params, classes: int, batch: int, seconds: float) -> list[dict]:
    """Every ACB run: ms per batch of the unfused model, its fused form and the plain architecture."""
    rows = []
    for name, run in params.runs.items():
        if run.block_type != "acb":
            continue
        unfused = build_model(run.model, classes, run.width, "acb").eval()
        fused, plain = to_deploy(unfused), build_model(run.model, classes, run.width).eval()
        u, f, p = latency_ms([unfused, fused, plain], (batch, 3, 32, 32), torch.device("cpu"), seconds)
        rows.append({"run": name, "unfused_ms": u, "fused_ms": f, "plain_ms": p, "fused_over_plain": f / p,
                     "unfused_over_fused": u / f})
    return rows


SEED000_METHODS = ("logits", "logits_mse", "feature")  # one forward pass of each network, as the bare minimum


def kd_step_rows(params, classes: int, batch: int, seconds: float) -> list[dict]:
    """Every distilled run (logit and feature KD): ms per training step, kdlib's against the bare minimum."""
    rows = []
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, classes, (batch,))
    for name, run in params.runs.items():
        if run.teacher is None or run.distill.method not in SEED000_METHODS:
            continue  # seed 003's methods have their own benchmark (benchmarks/stablekd.py)
        spec, t = run.distill, params.runs[run.teacher]
        teacher = build_model(t.model, classes, t.width, t.block_type)
        teacher = (to_deploy(teacher) if t.block_type == "acb" else teacher).eval().requires_grad_(False)
        student = build_model(run.model, classes, run.width, run.block_type)
        distiller = Distiller(student, teacher, spec.model_copy(update={"schedule": "constant", "alpha_end": None,
                                                                        "alpha": 0.5}), run.epochs).train()
        optimizer = torch.optim.SGD(distiller.parameters(), lr=1e-4, momentum=0.9)

        def bare():
            with torch.no_grad():
                teacher(x)
            loss = F.cross_entropy(student(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        def ours():
            _, losses = distiller.forward_train(x, y, 0)
            loss = sum(losses.values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        b, o = alternating_median_ms([bare, ours], seconds)
        rows.append({"run": name, "method": spec.method, "bare_minimum_ms": b, "kdlib_ms": o, "ratio": o / b})
    return rows


def table(rows: list[dict]) -> str:
    return tabulate(rows, headers="keys", tablefmt="github", floatfmt=".3f")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--batch", type=int, default=128, help="batch size (the seed's 128)")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=5.0, help="timing budget per row")
    args = parser.parse_args()
    params = load_params(args.params)
    torch.manual_seed(0)
    print(f"params: {args.params} (profile {params.profile}); torch {torch.__version__}, CPU")
    print(f"\nInference, ms per batch of {args.batch} (3x32x32), {torch.get_num_threads()} threads")
    print(table(latency_rows(params, args.classes, args.batch, args.seconds)))
    print(f"\nKD training step, ms per batch of {args.batch} (3x32x32)")
    print(table(kd_step_rows(params, args.classes, args.batch, args.seconds)))


if __name__ == "__main__":
    main()
