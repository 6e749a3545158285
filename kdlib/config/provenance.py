"""Where a run comes from in the params file: its `runs` entry, and the keys of it that do not count (Source)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    """Where a run comes from in the params file: the `runs` entry whose unset keys come from `defaults`, and the
    run keys it does not use (a chain's scratch baseline drops teacher and distill, a run trained once per seed
    its list of seeds, a StableKD run given stage by stage its `epochs`)."""
    entry: str
    unused: frozenset[str] = frozenset()


def sets(raw_run: dict, path) -> bool:
    """Whether a run's own params-file entry gives the key at `path` (rather than inheriting it)."""
    node = raw_run
    for part in path:
        if isinstance(node, list) and str(part).isdigit() and int(part) < len(node):
            node = node[int(part)]  # an item of a list, e.g. seeds.0
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return False
    return True


def _source(entry: str, replicated: bool, unused: set = frozenset()) -> Source:
    """The Source of a run of `entry`: a run trained once per seed ignores its `seed` and `seeds` (no run depends on
    the `seed` or `seeds` default it overrides)."""
    return Source(entry, frozenset(unused) | ({"seed", "seeds"} if replicated else {"seeds"}))
