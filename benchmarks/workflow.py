"""The workflow's own cost, measured (not asserted): run `python benchmarks/workflow.py`.

`snakemake -n` and `dvc status` on this workspace (after `make`, both should find nothing to do: the time a user
waits to learn that), the median of a few calls; and the default pipeline's wall time as `make` recorded it in
results/pipeline_time.json, with how many of the DAG's jobs that run executed.
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

PIPELINE_RECORD = Path("results/pipeline_time.json")  # written by `make` (Makefile, target pipeline)


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
    dvc_s, dvc_out = timed([str(bin_dir / "dvc"), "status"], repeats)
    return {"snakemake_n_s": snakemake_s, "snakemake_n_up_to_date": "Nothing to be done" in snakemake_out,
            "dvc_status_s": dvc_s, "dvc_status_up_to_date": "Data and pipelines are up to date" in dvc_out, "repeats": repeats}


def pipeline_record() -> dict | None:
    """What `make` last recorded: wall seconds, jobs run of the DAG's total, cores, date; None before any make."""
    return json.loads(PIPELINE_RECORD.read_text()) if PIPELINE_RECORD.is_file() else None


def record_pipeline(seconds: int, log: Path | None) -> dict:
    """`make`'s record: its wall seconds and, from Snakemake's log of that run, how many of the jobs it executed
    (`snakemake` with nothing to do writes no such line: 0 jobs)."""
    steps = re.findall(r"(\d+) of (\d+) steps", log.read_text()) if log else []
    done, total = map(int, steps[-1]) if steps else (0, None)
    record = {"seconds": seconds, "jobs_run": done, "jobs_in_dag": total, "cores": os.cpu_count(),
              "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    PIPELINE_RECORD.parent.mkdir(parents=True, exist_ok=True)
    PIPELINE_RECORD.write_text(json.dumps(record, indent=2) + "\n")
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--record", type=int, metavar="SECONDS", help="(make) record the pipeline's wall time")
    parser.add_argument("--log", type=Path, help="with --record: Snakemake's log of that run")
    args = parser.parse_args()
    if args.record is not None:
        print(f"recorded in {PIPELINE_RECORD}: {record_pipeline(args.record, args.log)}")
        return
    print(json.dumps({"dry_runs": dry_runs(args.params, args.repeats), "pipeline": pipeline_record()}, indent=2))


if __name__ == "__main__":
    main()
