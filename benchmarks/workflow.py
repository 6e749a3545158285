"""The workflow's own cost, measured (not asserted): run `python benchmarks/workflow.py`.

`snakemake -n` and `dvc status` on this workspace (after `make`, both should find nothing to do: the time a user
waits to learn that), the median of a few calls; and the default pipeline's wall time as `make` recorded it in
results/<profile>/pipeline_time.json, with how many of the DAG's jobs that run executed and, from the stages' own log
(kdlib.cli, KDLIB_JOB_LOG), the seconds per stage kind and the share of them spent starting up (the interpreter,
imports and params validation before a job's first useful work).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from kdlib.config import load_params
from kdlib.pipeline import dvc_file



def record_file(params_file: str) -> Path:
    """Where `make` (Makefile, target pipeline) records a profile's pipeline run."""
    return load_params(params_file).layout.results / "pipeline_time.json"


def timed(cmd: list[str], repeats: int) -> tuple[float, str]:
    """Median seconds of `cmd` over `repeats` calls, and its last output."""
    times, out = [], ""
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        out = done.stdout + done.stderr
    return statistics.median(times), out


def dry_runs(params_file: str, repeats: int) -> dict:
    """Seconds of `snakemake -n` and `dvc status` here, and whether each found nothing to do."""
    bin_dir = Path(sys.executable).parent
    extra = [] if params_file == "params.yaml" else ["--config", f"params={params_file}"]
    snakemake_s, snakemake_out = timed([str(bin_dir / "snakemake"), "-n", *extra], repeats)
    dvc_s, dvc_out = timed([str(bin_dir / "dvc"), "status", str(dvc_file(params_file, load_params(params_file)))],
                           repeats)
    return {"snakemake_n_s": snakemake_s, "snakemake_n_up_to_date": "Nothing to be done" in snakemake_out,
            "dvc_status_s": dvc_s, "dvc_status_up_to_date": "Data and pipelines are up to date" in dvc_out, "repeats": repeats}


def pipeline_record(params_file: str) -> dict | None:
    """What `make` last recorded: wall seconds, jobs run of the DAG's total, cores, date; None before any make."""
    path = record_file(params_file)
    return json.loads(path.read_text()) if path.is_file() else None


def by_kind(jobs_log: Path) -> dict:
    """Per stage kind, from the stages' job log: jobs, their seconds summed, the start-up part of those seconds; and
    the start-up share of all job seconds."""
    kinds: dict[str, dict] = {}
    for line in jobs_log.read_text().splitlines():
        job = json.loads(line)
        k = kinds.setdefault(job["kind"], {"jobs": 0, "seconds": 0.0, "startup_seconds": 0.0})
        k["jobs"] += 1
        k["seconds"] += job["total_s"]
        k["startup_seconds"] += job["startup_s"]
    total = sum(k["seconds"] for k in kinds.values())
    startup = sum(k["startup_seconds"] for k in kinds.values())
    return {"by_kind": {name: {key: round(v, 1) for key, v in k.items()} for name, k in sorted(kinds.items())},
            "job_seconds": round(total, 1), "startup_seconds": round(startup, 1),
            "startup_share": round(startup / total, 3) if total else None}


def record_pipeline(path: Path, seconds: int, log: Path | None, jobs_log: Path | None = None) -> dict:
    """`make`'s record: its wall seconds, from Snakemake's log of that run how many of the jobs it executed
    (`snakemake` with nothing to do writes no such line: 0 jobs), and the seconds per stage kind (`by_kind`)."""
    steps = re.findall(r"(\d+) of (\d+) steps", log.read_text()) if log else []
    done, total = map(int, steps[-1]) if steps else (0, None)
    record = {"seconds": seconds, "jobs_run": done, "jobs_in_dag": total, "cores": os.cpu_count(),
              "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              **(by_kind(jobs_log) if jobs_log and jobs_log.is_file() else {})}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--record", type=int, metavar="SECONDS", help="(make) record the pipeline's wall time")
    parser.add_argument("--log", type=Path, help="with --record: Snakemake's log of that run")
    parser.add_argument("--jobs", type=Path, help="with --record: the stages' job log of that run (KDLIB_JOB_LOG)")
    args = parser.parse_args()
    if args.record is not None:
        path = record_file(args.params)
        print(f"recorded in {path}: {record_pipeline(path, args.record, args.log, args.jobs)}")
        return
    print(json.dumps({"dry_runs": dry_runs(args.params, args.repeats), "pipeline": pipeline_record(args.params)},
                     indent=2))


if __name__ == "__main__":
    main()
