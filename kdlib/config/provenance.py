"""Which params-file keys define a run: its `runs` entry, or part of it key by key (see `_source`)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    """Where a run comes from in the params file: the `runs` entry whose unset keys come from `defaults`, the
    keys that define it, and the run keys it does not use (a chain's scratch baseline drops teacher and distill)."""
    entry: str
    keys: tuple[str, ...]
    unused: frozenset[str] = frozenset()


def leaves(tree: dict, prefix: tuple = ()) -> list[tuple]:
    """Key paths of every leaf of a nested mapping (an empty mapping counts as a leaf)."""
    out = []
    for key, value in tree.items():
        out += leaves(value, prefix + (key,)) if isinstance(value, dict) and value else [prefix + (key,)]
    return out


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


def _source(entry: str, raw_run: dict, replicated: bool, unused: set = frozenset()) -> Source:
    """The params keys behind a run: its `runs` entry, or that entry key by key where part of it does not count
    (a scratch baseline ignores its student's teacher and distill; a run trained once per seed ignores its list
    of seeds, so adding a seed re-runs none of the others). The teacher link needs no key: it is the teacher's
    checkpoint, a stage input. No run depends on the `seed` or `seeds` default it overrides."""
    if not replicated and not unused:
        return Source(entry, (f"runs.{entry}",), frozenset({"seeds"}))
    unused = frozenset(unused) | ({"seed", "seeds"} if replicated else {"seeds"})
    return Source(entry, tuple(".".join(("runs", entry) + path) for path in leaves(raw_run) if path[0] not in unused),
                  unused)
