"""docs/params-reference.md, generated from the schema: every params.yaml key, its type, default and range, and the
comment beside it in the class body. `python -m kdlib.config.reference` writes it (a test fails when the committed one is stale).
"""
from __future__ import annotations

import ast
import inspect
import io
import json
import sys
import tokenize
import types
from pathlib import Path
from typing import Annotated, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from kdlib.config.dense import EdgeExperiment, SRExperiment
from kdlib.config.params import Params
from kdlib.distill.methods import METHODS
from kdlib.models.registry import MODELS

TARGET = Path("docs/params-reference.md")
BOUNDS = (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤"), ("min_length", "at least"), ("max_length", "at most"))


def comments(cls: type) -> dict[str, str]:
    """Field -> the comment beside its line in the class body, or the comment lines right above it."""
    source = inspect.getsource(cls)
    by_line: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            by_line[tok.start[0]] = tok.string.lstrip("#").strip()
    lines = source.splitlines()
    out = {}
    for node in ast.parse(source).body[0].body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        text = [by_line[node.lineno]] if node.lineno in by_line else []
        above, line = [], node.lineno - 1
        while line in by_line and lines[line - 1].lstrip().startswith("#"):
            above.insert(0, by_line[line])
            line -= 1
        out[node.target.id] = " ".join(above + text)
    return out


def describe(annotation, metadata=()) -> str:
    """A type as a reader of params.yaml meets it, with its bounds."""
    # Field(...) inside an Annotated within a union stays a FieldInfo: its bounds are in its own metadata.
    metadata = [c for m in metadata for c in (m.metadata if isinstance(m, FieldInfo) else [m])]
    bounds = [f"{word} {getattr(m, attr)}" for m in metadata for attr, word in BOUNDS if getattr(m, attr, None) is not None]
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return describe(args[0], [*metadata, *args[1:]])
    if origin in (Union, types.UnionType):
        shown = [describe(a) for a in args if a is not type(None)]
        return " or ".join(shown) + (", or null" if type(None) in args else "")
    if origin is Literal:
        text = "one of " + ", ".join(f"`{a}`" for a in args)
    elif origin is list:
        text = f"list of {describe(args[0])}"
    elif origin is dict:
        text = f"names → {describe(args[1])}"
    elif inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        text = f"mapping ({annotation.__name__})"
    else:
        text = {bool: "true or false", int: "whole number", float: "number", str: "text"}.get(annotation,
                                                                                            str(annotation))
    return text + (f" ({', '.join(bounds)})" if bounds else "")


def table(cls: type[BaseModel]) -> str:
    notes = comments(cls) if cls.__module__.startswith("kdlib.") else {}
    rows = ["| key | type | default | what it does |", "|---|---|---|---|"]
    for name, field in cls.model_fields.items():
        value = None if field.is_required() else field.get_default(call_default_factory=True)
        default = ("required" if field.is_required() else "its defaults" if isinstance(value, BaseModel)
                   else f"`{json.dumps(value)}`")
        rows.append(f"| `{name}` | {describe(field.annotation, field.metadata)} | {default} | "
                    f"{notes.get(name, '').replace('|', '/')} |")
    return "\n".join(rows)


def sections() -> list[tuple[list[str], type[BaseModel]]]:
    """(the keys that hold it, class) for params.yaml and every mapping under it, in the order a reader meets them;
    a class held by several keys (a dense experiment's teacher and student) is listed once, under all of them."""
    found: dict[type[BaseModel], list[str]] = {}

    def walk(path: str, cls: type[BaseModel]) -> None:
        if cls in found:
            found[cls].append(path)
            return
        found[cls] = [path]
        for name, field in cls.model_fields.items():
            for nested in _models(field.annotation):
                walk(f"{path}.{name}" + (".<name>" if get_origin(_unwrap(field.annotation)) is dict else ""), nested)

    walk("", Params)
    for experiment in (SRExperiment, EdgeExperiment):
        walk(f"dense.<name>[{experiment.model_fields['task'].annotation.__args__[0]}]", experiment)
    return [([p.lstrip(".") or "params.yaml" for p in paths], cls) for cls, paths in found.items()]


def _unwrap(annotation):
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _models(annotation) -> list[type[BaseModel]]:
    """The schema classes a field's values are, in unions, lists and mappings too (dense experiments: listed apart)."""
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return [] if annotation in (SRExperiment, EdgeExperiment) else [annotation]
    return [m for a in get_args(annotation) for m in _models(a)]


def render() -> str:
    parts = ["# params.yaml: every key\n",
             "Generated from the schema (`kdlib/config/`) by `python -m kdlib.config.reference`; do not edit. What the "
             "keys are for, with examples: [params.md](params.md). `defaults` takes any key of `runs.<name>`; a run's "
             "own keys win. `dense.<name>[super_resolution]` is a dense experiment with `task: super_resolution`. "
             "Unknown keys, wrong types and values out of range are refused with one line naming the key.\n"]
    for paths, cls in sections():
        doc = " ".join(cls.__doc__.split()) if cls.__doc__ and cls is not Params else ""
        parts.append("## " + ", ".join(f"`{p}`" for p in paths) + "\n\n" + (f"{doc}\n\n" if doc else "")
                     + table(cls) + "\n")
    parts.append("## KD methods (`distill.method`)\n\nWhich `distill` keys each reads, and its defaults for them "
                 "(`kdlib/distill/methods.py`).\n\n| method | label | reads | defaults |\n|---|---|---|---|\n"
                 + "\n".join(f"| `{m}` | {row['label']} | {', '.join(row['keys']) or '-'} | "
                             f"{', '.join(f'{k}: {v}' for k, v in row['defaults'].items()) or '-'} |"
                             for m, row in METHODS.items()) + "\n")
    parts.append("## Models (`runs.<name>.model`)\n\n" + ", ".join(f"`{m}`" for m in MODELS) + "\n")
    return "\n".join(parts)


def main() -> int:
    text = render()
    TARGET.write_text(text)
    print(f"wrote {TARGET} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
