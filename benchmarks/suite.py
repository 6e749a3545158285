"""The benchmark suite: every figure of benchmarks/ in one run (`make bench`), written to results/<profile>/benchmarks.json
and results/<profile>/benchmarks.md. Run it where the pipeline has finished (after `make`): it reads the prepared data and the
teachers' checkpoints, and times `snakemake -n` on the workspace.

Ratios carry across machines, absolute times do not:
- a KD training step over the bare minimum (student step + no-grad teacher forward; target <= 1.05),
- a live-teacher KD epoch over one replaying cached teacher outputs, and a 4-point temperature sweep both ways
  (targets 1.5 for ResNet-56 -> ResNet-20, 2 for ResNet-101 -> MobileNetV2; benchmarks/teacher_cache.py),
- the loader's images/s over training's (above 1: loading is not the bottleneck),
- ACB latency fused / plain (target <= 1.05) and unfused / fused (what fusing saves),
- `snakemake -n` on the finished workspace over the pipeline's wall time.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch
from tabulate import tabulate

import recipe
import seed000
import teacher_cache
import workflow
from kdlib.config import load_params


def spread(values: list[float]) -> dict:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)} if values else {}


def summary(results: dict) -> dict:
    """The ratios, each as min / median / max over its rows."""
    pipeline, dry = results["workflow"]["pipeline"], results["workflow"]["dry_runs"]
    return {"kd_step_over_bare_minimum": spread([r["ratio"] for r in results["kd_step"]]),
            "live_over_replayed_kd_epoch": spread([r["epoch speed-up"] for r in results["teacher_cache"]]),
            "live_over_replayed_temperature_sweep": spread([r["sweep speed-up"] for r in results["teacher_cache"]]),
            "load_over_train_throughput": spread([r["load_over_train"] for r in results["loading"]]),
            "fused_over_plain_latency": spread([r["fused_over_plain"] for r in results["latency"]]),
            "unfused_over_fused_latency": spread([r["unfused_over_fused"] for r in results["latency"]]),
            "snakemake_n_over_pipeline_wall_time":
                dry["snakemake_n_s"] / pipeline["seconds"] if pipeline and pipeline["seconds"] else None}


def markdown(results: dict) -> str:
    host, pipeline, dry = results["host"], results["workflow"]["pipeline"], results["workflow"]["dry_runs"]
    table = lambda rows, fmt=".3f": tabulate(rows, headers="keys", tablefmt="github", floatfmt=fmt)  # noqa: E731
    ratios = [[name, *(f"{v:.3f}" for v in s.values())] for name, s in results["summary"].items() if isinstance(s, dict) and s]
    lines = [f"# Benchmarks: `{results['params']}` (profile {results['profile']})", "",
             f"Measured {results['date']} in {results['seconds']:.0f} s on {host['cpus']} CPU cores ({host['threads']} "
             f"PyTorch threads, torch {host['torch']}); random weights and inputs unless a row says otherwise; "
             f"candidates alternate block by block, medians reported.", "",
             "## Ratios (min / median / max over the rows below)", "",
             tabulate(ratios, headers=["ratio", "min", "median", "max"], tablefmt="github", disable_numparse=True), "",
             f"## KD training step against the bare minimum (ms per batch of {results['batch']})", "",
             table(results["kd_step"]), "",
             f"## Cached teacher outputs against the live teacher (seconds; CIFAR shape, "
             f"{teacher_cache.CLASSES} classes, logit KD at T = "
             f"{', '.join(f'{t:g}' for t in teacher_cache.TEMPERATURES)})", "",
             "An epoch of the same batches per temperature, trained with the live teacher and replaying its cached "
             "logits; the replayed sweep also pays the one teacher pass that writes them.", "",
             table(results["teacher_cache"], ".2f"), "",
             "## Data loading against training (images/s on the prepared data, each run's own augmentation and mixing)", "",
             table(results["loading"], ("", ".0f", ".0f", ".2f")), "",
             f"## ACB inference: unfused, fused, plain (ms per batch of {results['batch']})", "",
             table(results["latency"]), "",
             "## Workflow", "",
             f"- `snakemake -n` on this workspace: {dry['snakemake_n_s']:.2f} s (median of {dry['repeats']}), "
             f"{'nothing to do' if dry['snakemake_n_up_to_date'] else 'jobs pending: not a finished workspace'}; "
             f"`dvc status`: {dry['dvc_status_s']:.2f} s, "
             f"{'up to date' if dry['dvc_status_up_to_date'] else 'changes pending'}."]
    if pipeline:
        ratio = results["summary"]["snakemake_n_over_pipeline_wall_time"]
        lines.append(f"- The pipeline's wall time as `make` recorded it ({pipeline['finished']}, {pipeline['cores']} "
                     f"cores): {pipeline['seconds']} s, running {pipeline['jobs_run']} of {pipeline['jobs_in_dag']} "
                     f"jobs; `snakemake -n` is {ratio:.2e} of it.")
        if "by_kind" in pipeline:
            rows = [{"stage kind": kind, "jobs": k["jobs"], "job seconds": k["seconds"],
                     "start-up seconds": k["startup_seconds"], "start-up share": k["startup_seconds"] / k["seconds"]}
                    for kind, k in pipeline["by_kind"].items()]
            lines += ["", f"Job seconds by stage kind in that run (summed over jobs; on {pipeline['cores']} cores jobs "
                      "run side by side). Start-up: from a job's process start to its first useful work (interpreter, "
                      "imports, params validation).", "",
                      tabulate(rows, headers="keys", tablefmt="github", floatfmt=("", "", ".1f", ".1f", ".2f")), "",
                      f"Start-up share of all job seconds: {pipeline['startup_share']:.1%} "
                      f"({pipeline['startup_seconds']:.0f} of {pipeline['job_seconds']:.0f} s)."]
    else:
        lines.append(f"- No pipeline wall time: `make` has not run here ({workflow.record_file(results['params'])} is missing).")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--batch", type=int, default=64, help="batch size of the latency and KD-step rows")
    parser.add_argument("--seconds", type=float, default=3.0, help="timing budget per latency or KD-step row")
    parser.add_argument("--batches", type=int, default=15, help="batches timed per throughput figure")
    parser.add_argument("--repeats", type=int, default=3, help="calls of snakemake -n and dvc status")
    parser.add_argument("--cache-batches", type=int, default=3, help="batches per epoch of the teacher-cache rows")
    parser.add_argument("--out", type=Path, help="default: the profile's results folder, results/<profile>/")
    args = parser.parse_args()
    params = load_params(args.params)
    torch.manual_seed(0)
    started, classes = time.perf_counter(), 10
    results = {"params": args.params, "profile": params.profile, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "host": {"cpus": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__},
               "batch": args.batch}
    for key, measure in (("kd_step", lambda: seed000.kd_step_rows(params, classes, args.batch, args.seconds)),
                         ("teacher_cache", lambda: teacher_cache.sweep_rows(args.batch, args.cache_batches)),
                         ("loading", lambda: recipe.own_recipe_rows(params, args.batches)),
                         ("latency", lambda: seed000.latency_rows(params, classes, args.batch, args.seconds)),
                         ("workflow", lambda: {"dry_runs": workflow.dry_runs(args.params, args.repeats),
                                               "pipeline": workflow.pipeline_record(args.params)})):
        print(f"{key} ...", flush=True)
        results[key] = measure()
    results["seconds"] = time.perf_counter() - started
    results["summary"] = summary(results)
    out = args.out or params.layout.results
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmarks.json").write_text(json.dumps(results, indent=2) + "\n")
    text = markdown(results)
    (out / "benchmarks.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
