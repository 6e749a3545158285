"""Checks of a dense experiment that params validation cannot make without the networks: SR model names and
their arguments, photo names. Not result code: it only refuses bad params, so no stage's result depends on it.
It reads the network modules' source instead of importing them (torch): the DAG builder runs these checks on
every `snakemake -n`."""
from __future__ import annotations

import ast
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

from kdlib.dense.registry import SR_MODELS
from kdlib.errors import KDError

if TYPE_CHECKING:
    from kdlib.config import EdgeExperiment, SRExperiment


def problems(name: str, exp: SRExperiment | EdgeExperiment) -> list[str]:
    """What params validation cannot see without the networks: SR model names and their arguments, photo names.
    (U-Net encoders are checked when built: listing them imports segmentation-models-pytorch, which is slow.)"""
    out = []
    if exp.task != "super_resolution":
        return out
    for role in ("teacher", "student"):
        net, key = getattr(exp, role), f"dense.{name}.{role}"
        if net.model not in SR_MODELS:
            out.append(f"{key}.model: unknown super-resolution model '{net.model}' (known: {', '.join(SR_MODELS)})")
            continue
        kinds = {arg: kind for arg, kind in _keyword_args(SR_MODELS[net.model]).items() if arg != "scale"}
        for arg, value in net.args.items():
            if arg not in kinds:
                out.append(f"{key}.args.{arg}: '{net.model}' takes no argument '{arg}' (it takes: {', '.join(kinds)})")
            elif not _fits(value, kinds[arg]):
                out.append(f"{key}.args.{arg}: expected {WANTED[kinds[arg]]} (got {value!r})")
    if exp.data.source == "photos":
        known = _literal("kdlib.data.sources", "PHOTOS")
        for key in ("train_images", "eval_images"):
            out += [f"dense.{name}.data.{key}: unknown photo '{p}' (known: {', '.join(known)})"
                    for p in getattr(exp.data, key) if p not in known]
    return out


def check(name: str, exp: SRExperiment | EdgeExperiment) -> None:
    found = problems(name, exp)
    if found:
        raise KDError(found[0] if len(found) == 1 else "\n  " + "\n  ".join(found))


def _module_tree(module: str) -> ast.Module:
    return ast.parse(Path(importlib.util.find_spec(module).origin).read_text(encoding="utf-8"))


# What a network argument annotated so may hold: sizes and counts from 1 to 4096, ratios finite and positive.
WANTED = {"int": "a whole number from 1 to 4096", "float": "a finite number above 0 and at most 1000",
          "tuple[int, ...]": "a list of 1 to 64 whole numbers from 1 to 4096"}


def _fits(value, kind: str) -> bool:
    def whole(v):
        return isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 4096
    if kind == "int":
        return whole(value)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= 1000
    if kind == "tuple[int, ...]":
        return isinstance(value, list) and 1 <= len(value) <= 64 and all(map(whole, value))
    return True  # an annotation not listed in WANTED: the constructor checks


def _keyword_args(target: str) -> dict[str, str]:
    """The arguments of the class "module:Name"'s __init__ (or of the function) and their annotations, read from
    its source."""
    module, _, name = target.partition(":")
    node = next(n for n in _module_tree(module).body if getattr(n, "name", None) == name)
    if isinstance(node, ast.ClassDef):
        node = next(n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    a = node.args
    return {arg.arg: ast.unparse(arg.annotation) if arg.annotation else ""
            for arg in a.posonlyargs + a.args + a.kwonlyargs if arg.arg != "self"}


def _literal(module: str, name: str):
    """The value of a module-level `name = <literal>` in `module`, read from its source."""
    return next(ast.literal_eval(n.value) for n in _module_tree(module).body
                if isinstance(n, ast.Assign) and any(getattr(t, "id", None) == name for t in n.targets))
