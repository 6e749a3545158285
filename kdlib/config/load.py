"""Read params.yaml, merge `defaults` into every run, expand chains and seeds, and validate.

Every problem becomes one KDError that names the offending key, e.g.
`params.yaml: runs.student.distill.alpha: must be between 0 and 1 (got 1.5)`.
"""
from __future__ import annotations

import re
from pathlib import Path
from types import UnionType
from typing import Annotated, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from kdlib.config.checks import _cross_check
from kdlib.config.dense import TASKS
from kdlib.config.lineage import scratch_baseline
from kdlib.config.params import Params
from kdlib.config.provenance import Source, _source, sets
from kdlib.config.schema import Run
from kdlib.config.suggest import _suggest
from kdlib.errors import KDError
from kdlib.paths import DATA_RAW


RUN_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")  # short enough for any file system's names

# Limits on what a params file may make the loader build: the largest profile is about 20 KB and 2,000 values.
MAX_BYTES = 1_000_000
MAX_VALUES = 100_000  # after expanding aliases: anchors are welcome (the profiles use them), alias bombs are not


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML loader that rejects a key given twice in one mapping (PyYAML silently keeps the last) and keys that
    YAML reads as something other than text (`yes:` is the boolean true, `1:` a number)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` merges a mapping in; the entry's own keys override it
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str):
                raise KDError(f"line {key_node.start_mark.line + 1}: the key '{key_node.value}' reads as "
                              f"{type(key).__name__} {key!r} in YAML; quote it if it is a name")
            if key in seen:
                raise KDError(f"duplicate key '{key}' at line {key_node.start_mark.line + 1}: YAML would keep only "
                              "the last; give each key (run, dataset, setting) once")
            seen.add(key)
        return super().construct_mapping(node, deep)

    def load(self):
        """The document, once its size with every alias expanded is known to be within MAX_VALUES."""
        top = self.get_single_node()
        if top is None:
            return None
        _expanded_size(top, {}, set())
        return self.construct_document(top)


def _expanded_size(node, sizes: dict[int, int], open_: set[int]) -> int:
    """How many values `node` stands for once aliases are expanded (an alias is the same node object again)."""
    if id(node) in sizes:
        return sizes[id(node)]
    if id(node) in open_:
        raise KDError(f"line {node.start_mark.line + 1}: an alias refers to a value that contains it")
    open_.add(id(node))
    children = [c for pair in node.value for c in pair] if isinstance(node, yaml.MappingNode) else \
        node.value if isinstance(node, yaml.SequenceNode) else []
    size = 1 + sum(_expanded_size(child, sizes, open_) for child in children)
    if size > MAX_VALUES:
        raise KDError(f"line {node.start_mark.line + 1}: with its aliases expanded this value holds more than "
                      f"{MAX_VALUES:,} values; a params file needs far fewer")
    open_.discard(id(node))
    sizes[id(node)] = size
    return size


def _read_yaml(path: Path):
    """The parsed params file, within MAX_BYTES and MAX_VALUES, as UTF-8 text."""
    if path.stat().st_size > MAX_BYTES:
        raise KDError(f"{path}: {path.stat().st_size:,} bytes; a params file is at most {MAX_BYTES:,}")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise KDError(f"{path}: not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    loader = _UniqueKeyLoader(text)
    try:
        return loader.load()
    except KDError as e:
        raise KDError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        raise KDError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
    except RecursionError:
        raise KDError(f"{path}: values nested too deeply") from None
    finally:
        loader.dispose()


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for k, v in override.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _describe(err: dict, raw_run: dict | None, run_name: str | None) -> str:
    """Turn one pydantic error into 'key.path: message', naming `defaults` when the key came from there."""
    loc = [str(p) for p in err["loc"]]
    if run_name is not None:
        # Keys the run itself does not give came from `defaults` (or are missing altogether).
        prefix = ["runs", run_name] if sets(raw_run, loc) or err["type"] == "missing" else ["defaults"]
        loc = prefix + loc
    if loc[:1] == ["dense"] and len(loc) > 2 and loc[2] in TASKS:
        del loc[2]  # the task tag pydantic adds for the tagged union
    if err["type"] == "extra_forbidden":
        return f"{'.'.join(loc)}: unknown key{_suggest(loc[-1], _keys_at(loc))}"
    msg = err["msg"].removeprefix("Value error, ")
    return f"{'.'.join(loc)}: {msg}"


def _keys_at(loc: list[str]) -> set[str]:
    """The keys the schema allows where `loc` ends (a run's keys under runs.<name> or defaults)."""
    found: list = [Run] if loc[0] == "defaults" else [Params]
    for part in loc[1:-1] if loc[0] == "defaults" else loc[:-1]:
        found = [inner for tp in found for inner in _inside(tp, part)]
    return {key for tp in found if isinstance(tp, type) and issubclass(tp, BaseModel) for key in tp.model_fields}


def _inside(tp, part: str) -> list:
    """The types that `part` (a field, a mapping key or a list index) of a value of type `tp` may hold."""
    out = []
    for t in _unwrap(tp):
        if isinstance(t, type) and issubclass(t, BaseModel):
            out += [t.model_fields[part].annotation] if part in t.model_fields else []
        elif get_origin(t) in (dict, list):
            out.append(get_args(t)[-1])
    return [inner for t in out for inner in _unwrap(t)]


def _unwrap(tp) -> list:
    """`tp` without Annotated, unions and None."""
    if get_origin(tp) is Annotated:
        return _unwrap(get_args(tp)[0])
    if get_origin(tp) in (Union, UnionType):
        return [inner for arg in get_args(tp) for inner in _unwrap(arg)]
    return [] if tp is type(None) else [tp]


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read, merge `defaults` into every run, validate, and check cross-references."""
    path = Path(path)
    try:
        if not path.is_file():
            raise KDError(f"{path}: no such params file")
        raw = _read_yaml(path) or {}
    except OSError as e:
        raise KDError(f"{path}: cannot read it ({e.strerror or e})") from None
    if not isinstance(raw, dict):
        raise KDError(f"{path}: the top level must be a mapping of keys")
    return validate(raw, source=str(path))


def validate(raw: dict, source: str = "params.yaml") -> Params:
    raw = {key: value for key, value in raw.items() if value is not None or key == "runs"}  # blank = absent
    raw_given = set(raw)
    raw.setdefault("profile", Path(source).stem)  # every profile needs folders of its own
    defaults = raw.pop("defaults", None) or {}
    raw_runs = raw.get("runs") or {}
    raw_chains = raw.get("chains") or {}
    shapes = [(key, value) for key, value in (("defaults", defaults), ("runs", raw_runs), ("chains", raw_chains),
                                              ("datasets", raw.get("datasets") or {}))
              if not isinstance(value, dict)]
    shapes += [(f"runs.{n}", r) for n, r in (raw_runs.items() if isinstance(raw_runs, dict) else ())
               if r is not None and not isinstance(r, dict)]
    if shapes:
        raise KDError(f"{source}: " + "; ".join(f"{k}: must be a mapping of keys, not {type(v).__name__}"
                                                 for k, v in shapes))
    problems = []
    if isinstance(raw["profile"], str) and not RUN_NAME.match(raw["profile"]):
        given = "" if "profile" in raw_given else " (from the file name: set a profile key)"
        problems.append(f"profile: '{raw['profile']}'{given}: a profile names folders, so it must start with a letter "
                        "and use only letters, digits and _ (64 at most)")
    elif raw["profile"] == DATA_RAW.name:
        problems.append(f"profile: '{DATA_RAW.name}' is taken: {DATA_RAW}/ holds downloaded datasets; choose another name")
    for section in ("runs", "datasets", "chains", "dense"):
        for name in raw.get(section) or {}:
            if not RUN_NAME.match(str(name)):
                problems.append(f"{section}.{name}: names must start with a letter and use only letters, digits and _ "
                                "(64 at most)")
    if "seed" in defaults and "seeds" in defaults:
        problems.append("defaults: give 'seed' (one run) or 'seeds' (one run per seed), not both")
        defaults = {k: v for k, v in defaults.items() if k != "seed"}  # reported once here, not once per run
    chain_teachers, chain_problems = _chain_teachers(raw_chains, raw_runs)
    problems += chain_problems
    runs, sources = {}, {}
    for name, run in raw_runs.items():
        merged = _merge(defaults, run or {})
        for own, inherited in (("seeds", "seed"), ("seed", "seeds")):  # the run's own choice wins over defaults'
            if own in (run or {}) and inherited not in (run or {}):
                merged.pop(inherited, None)
        if name in chain_teachers:
            merged["teacher"] = chain_teachers[name][1]
        distill = merged.get("distill")
        stage_epochs = distill.get("stage_epochs") if isinstance(distill, dict) else None
        staged = isinstance(stage_epochs, list) and all(isinstance(e, int) for e in stage_epochs)
        if staged and "epochs" not in (run or {}):
            merged["epochs"] = sum(stage_epochs)  # a StableKD run's epochs are its stages' (the default's give way)
        try:
            runs[name] = Run.model_validate(merged)
        except ValidationError as e:
            problems += [_describe(err, run or {}, name) for err in e.errors()]
        # Given stage by stage, the epochs depend on no `epochs` key.
        sources[name] = _source(name, replicated="seeds" in merged, unused={"epochs"} if staged else set())
    try:
        params = Params.model_validate({**raw, "runs": {}, "chains": raw_chains})
    except ValidationError as e:
        problems += [_describe(err, None, None) for err in e.errors()]
        params = None
    if not problems and params is not None:
        problems += _add_scratch_baselines(params.chains, runs, sources)
    if not problems and params is not None:
        problems += _cross_check(params, runs)
    if not problems and params is not None:
        expanded, replicas, expand_problems = _one_run_per_seed(runs)
        problems += expand_problems
    problems = list(dict.fromkeys(problems))  # a bad default shows once, not once per run
    if problems:
        raise KDError(f"{source}: " + (problems[0] if len(problems) == 1 else "\n  " + "\n  ".join(problems)))
    params = params.model_copy(update={"runs": expanded})
    params._written, params._replicas, params._file = runs, replicas, source
    params._sources = {member: sources[name] for name, seeds in replicas.items() for member in seeds.values()}
    return params


def _chain_teachers(chains: dict, raw_runs: dict) -> tuple[dict[str, tuple[str, str]], list[str]]:
    """Student -> (its chain, its teacher) for every chain generation after the first. A student that names its
    own teacher keeps it, which must then be an earlier member of its chain."""
    out, problems = {}, []
    for chain, members in chains.items():
        if not isinstance(members, list) or len(members) < 2:
            continue  # the Params model reports the shape
        for i, name in enumerate(members):
            if not isinstance(name, str):
                continue  # the Params model reports it
            if name not in raw_runs:
                problems.append(f"chains.{chain}: '{name}' names no run{_suggest(str(name), raw_runs)}")
                continue
            if name in members[:i]:
                problems.append(f"chains.{chain}: '{name}' appears twice")
                continue
            if i == 0:
                continue
            own = (raw_runs[name] or {}).get("teacher")
            if own is not None and own not in members[:i]:
                problems.append(f"runs.{name}.teacher: '{own}' is not an earlier generation of chain '{chain}' "
                                f"({', '.join(members[:i])})")
            if name in out:
                problems.append(f"chains.{chain}: '{name}' is already a student in chain '{out[name][0]}'")
            out[name] = (chain, own or members[i - 1])
    return out, problems


def _add_scratch_baselines(chains: dict[str, list[str]], runs: dict[str, Run], sources: dict[str, Source]) -> list[str]:
    """Every chain student gets a scratch-trained run of its recipe, unless one is already among the runs."""
    problems = []
    for chain, members in chains.items():
        for student in members[1:]:
            if scratch_baseline(runs, student):
                continue
            scratch = runs[student].model_copy(update={"teacher": None, "distill": None})
            name = f"{student}_scratch"
            if name in runs:
                problems.append(f"runs.{name}: chain '{chain}' needs this name for the scratch baseline of "
                                f"'{student}', and this run has another recipe; rename it")
                continue
            runs[name] = scratch
            sources[name] = _source(student, replicated=scratch.seeds is not None, unused={"teacher", "distill"})
    return problems


def _one_run_per_seed(written: dict[str, Run]) -> tuple[dict[str, Run], dict[str, dict[int, str]], list[str]]:
    """Expand every run with `seeds` into one run per seed; a student's seed-k run learns from its teacher's."""
    replicas = {name: ({s: f"{name}_s{s}" for s in run.seeds} if run.seeds else {run.seed: name})
                for name, run in written.items()}
    runs, problems = {}, []
    for name, run in written.items():
        for seed, member in replicas[name].items():
            teacher = None
            if run.teacher is not None:
                taught = replicas[run.teacher]
                if written[run.teacher].seeds is None:
                    teacher = next(iter(taught.values()))
                elif run.seeds is not None and seed in taught:
                    teacher = taught[seed]
                else:
                    problems.append(f"runs.{name}.seeds: teacher '{run.teacher}' runs seeds {list(taught)}; give "
                                    f"'{name}' seeds from those, so each seed learns from its own teacher")
                    break
            if member != name and member in written:
                problems.append(f"runs.{member}: the name is taken by seed {seed} of '{name}'; rename it")
            runs[member] = run.model_copy(update={"seed": seed, "seeds": None, "teacher": teacher})
    return runs, replicas, problems
