"""What every stage script shares: argument parsing, logging, turning KDError into one line + exit 2, and, when
KDLIB_JOB_LOG names a file (`make` sets it), one line there per finished job: its start-up and total seconds."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from kdlib.config import Params, load_params
from kdlib.errors import KDError
from kdlib.warm import process_start

JOB_LOG = "KDLIB_JOB_LOG"


def stage_main(description: str, body, takes_name: bool = True, takes_stage: bool = False,
               roles: tuple[str, ...] | None = None) -> None:
    """Parse `[name] [role] [--stage C] [--params FILE]`, validate params, run `body(params, name[, role][, stage])`;
    exit 2 on a user error."""
    parser = argparse.ArgumentParser(description=description)
    if takes_name:
        parser.add_argument("name", help="the run or dataset name in params.yaml")
    if roles:
        parser.add_argument("role", choices=roles, help="which of the experiment's networks")
    if takes_stage:
        parser.add_argument("--stage", type=int, help="one StableKD stage of the run (default: the last)")
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    args = parser.parse_args()
    # kdlib's progress lines; other libraries' only from warnings up (matplotlib notes every categorical axis)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stdout)
    logging.getLogger("kdlib").setLevel(logging.INFO)
    job = [args.name if takes_name else None, *((args.role,) if roles else ()), *((args.stage,) if takes_stage else ())]
    try:
        params = load_params(args.params)
        startup, started = _process_age(), time.perf_counter()
        body(params, *job)
    except KDError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:  # a read-only folder, a full disk, a name too long: which file, and why
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e}", file=sys.stderr)
        sys.exit(2)
    except MemoryError:
        print(f"error: out of memory running {Path(sys.argv[0]).name} {' '.join(str(a) for a in job if a is not None)}; reduce the batch "
              "sizes (or latency_batches) in the params file", file=sys.stderr)
        sys.exit(2)
    if os.environ.get(JOB_LOG) and startup is not None:
        record = {"kind": Path(sys.argv[0]).stem, "job": " ".join(str(a) for a in job if a is not None),
                  "startup_s": round(startup, 3), "total_s": round(startup + time.perf_counter() - started, 3)}
        with open(os.environ[JOB_LOG], "a", encoding="utf-8") as log:  # one short append: whole lines, any order
            log.write(json.dumps(record) + "\n")


def _process_age() -> float | None:
    """Seconds since this job's process started (Linux, from /proc; under kdlib.warm, the stage process that
    handed the job over): the interpreter, the imports and params validation before a stage's first useful work.
    None where /proc is missing."""
    started = process_start()
    try:
        return None if started is None else float(Path("/proc/uptime").read_text().split()[0]) - started
    except (OSError, ValueError, IndexError):
        return None


def require(params: Params, section: str, name: str) -> None:
    table = getattr(params, section)
    if name not in table:
        raise KDError(f"'{name}' is not in {section} of the params file (known: {', '.join(table)})")
