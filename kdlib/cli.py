"""What every stage script shares: argument parsing, logging, and turning KDError into one line + exit 2."""
from __future__ import annotations

import argparse
import logging
import sys

from kdlib.config import Params, load_params
from kdlib.errors import KDError


def stage_main(description: str, body, takes_name: bool = True, takes_stage: bool = False,
               roles: tuple[str, ...] | None = None) -> None:
    """Parse `[name] [role] [--stage C] [--params FILE]`, validate params, run `body(params, name[, role][, stage])`;
    exit 2 on a user error."""
    parser = argparse.ArgumentParser(description=description)
    if takes_name:
        parser.add_argument("name", help="the run or dataset name in params.yaml")
    if roles:
        parser.add_argument("role", choices=roles, help="which of the experiment's networks to train")
    if takes_stage:
        parser.add_argument("--stage", type=int, help="one StableKD stage of the run (default: the last)")
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stdout)
    try:
        params = load_params(args.params)
        body(params, args.name if takes_name else None, *((args.role,) if roles else ()),
             *((args.stage,) if takes_stage else ()))
    except KDError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def require(params: Params, section: str, name: str) -> None:
    table = getattr(params, section)
    if name not in table:
        raise KDError(f"'{name}' is not in {section} of the params file (known: {', '.join(table)})")
