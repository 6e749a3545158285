"""params.yaml -> the list of stages: the one source of truth for both Snakemake and DVC.

The Snakefile builds one rule per stage from `stages()`; `python -m kdlib.pipeline dvc` writes
dvc.yaml from the same list (committed; a test fails when it is stale).

A stage depends on what can change its result and nothing else:
- code: its script and the kdlib modules that script imports, plus the modules chosen by name for its run
  (its model's and its teacher's, its KD method's, a dense role's networks, the report's studies). Code that
  only parses, validates or words messages (the config package, the name tables) is not followed;
- values: its recipe, resolved: its run's settings and those of every run upstream of it, its dataset's, and
  the entries of the name tables they resolve to (`MODELS.<model>`, a method's row and the method defaults it
  takes, the schema classes whose defaults it takes). Snakemake compares them as the rule's params; DVC
  compares files: the `recipes` stage (DVC only) reads params.yaml once and writes each stage's values to
  results/<profile>/recipes/<stage>.json, which that stage depends on, so `dvc status` reads no params file per stage.
"""
from __future__ import annotations

import argparse
import ast
import importlib
import json
import os
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import yaml
from pydantic import BaseModel

from kdlib.atomic import atomic_write_text
from kdlib.config import (DENSE_ROLES, DENSE_STUDENTS, STREAM_KEYS, Params, Run, ancestors, load_params, stream_name,
                          stream_recipe, streams)
from kdlib.config.params import DEFAULT_PARAMS, is_default, stage_command
from kdlib.distill.methods import METHODS
from kdlib.dense.registry import role_entries, role_modules
from kdlib.errors import KDError
from kdlib.models.registry import model_module
from kdlib.paths import Layout
from kdlib.report.studies import applicable, report_outputs

# Modules that parse, validate, word messages or name things: a stage follows the values they resolve to (its
# recipe, the table entries it uses), not their code.
NOT_RESULT_CODE = ("kdlib/config/", "kdlib/errors.py", "kdlib/cli.py", "kdlib/warm.py", "kdlib/models/registry.py",
                   "kdlib/distill/methods.py", "kdlib/dense/registry.py", "kdlib/dense/checks.py")
MODELS_TABLE, METHODS_TABLE = "kdlib/models/registry.py", "kdlib/distill/methods.py"
DENSE_TABLE = "kdlib/dense/registry.py"
STAGE_KINDS = ("prepare", "teacher_outputs", "train", "fuse", "export", "dense_prepare", "dense_train",
               "dense_export", "tables")  # Stage.kind
RECIPES = "recipes"  # DVC's stage that resolves params.yaml into every stage's recipe file
ROOT_PIPELINE = Path("dvc.yaml")  # params.yaml's DVC pipeline (another profile's: profile_pipeline)


@dataclass(frozen=True)
class Stage:
    name: str
    script: str
    arg: str | None
    deps: list[str]
    outs: list[str] = field(default_factory=list)  # cached by DVC
    metrics: list[str] = field(default_factory=list)  # small JSON of numbers, kept in git: DVC's metrics
    records: list[str] = field(default_factory=list)  # other small JSON, kept in git, not cached
    plots: list[str] = field(default_factory=list)
    reports: list[str] = field(default_factory=list)  # tables and figures, kept in git
    tables: dict[str, list[str]] = field(default_factory=dict)  # name-table file -> the entries the stage uses
    values: str = ""  # its resolved recipe and those entries: Snakemake's params, DVC's recipe file (JSON)
    gpu: bool = False
    # Snakemake caps a job's threads (OMP_NUM_THREADS) at its declared count, 1 by default. On a GPU host or a
    # cluster, training gets every core and fusing and exporting run alone, their latencies undisturbed; a local
    # run without a GPU gives every job one core (Snakefile).
    all_cores: bool = False

    def cmd(self, params_file: str) -> str:
        """The stage's command line (kdlib.config.params.stage_command)."""
        return stage_command(self.script, self.arg.split() if self.arg else [], params_file)

    @property
    def kind(self) -> str:
        """One of STAGE_KINDS (the script's name): what cluster profiles size."""
        return Path(self.script).stem

    @property
    def outputs(self) -> list[str]:
        return self.outs + self.metrics + self.records + self.plots + self.reports


def code_deps(script: str, root: Path = Path("."), skip: tuple[str, ...] = NOT_RESULT_CODE) -> list[str]:
    """The script plus every kdlib source file it imports, directly or through other kdlib modules, except
    those under `skip` (whose imports are not followed either)."""
    seen: set[str] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        if path in seen or path.startswith(skip):
            continue
        seen.add(path)
        todo += _kdlib_imports(path, root)
    return sorted(seen)


def module_deps(*modules: str, root: Path = Path(".")) -> list[str]:
    """The files of dotted kdlib modules chosen by name at run time, and of every kdlib module they import."""
    return sorted({f for m in modules for path in _module_files(m, root) for f in code_deps(path, root)})


def deps_list(*groups) -> list[str]:
    """Dependencies in the order a reader scans them (script, data, checkpoints, then code), each once."""
    return list(dict.fromkeys(d for group in groups for d in group))


@cache
def _kdlib_imports(path: str, root: Path) -> list[str]:
    tree = ast.parse((root / path).read_text(), filename=path)
    found = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise KDError(f"{path}: relative import (line {node.lineno}); kdlib imports absolutely, so that every "
                          "stage's code dependencies can be read from its imports")
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            if name == "kdlib" or name.startswith("kdlib."):
                found += _module_files(name, root)
    return found


def _module_files(module: str, root: Path) -> list[str]:
    """Files for `a.b.c`: every package __init__ on the way, and the module itself if it is a file."""
    parts, files = module.split("."), []
    for i in range(1, len(parts) + 1):
        base = "/".join(parts[:i])
        for candidate in (f"{base}/__init__.py", f"{base}.py"):
            path = root / candidate
            if path.is_file() and _has_code(path):
                files.append(candidate)
    return files


@cache
def _has_code(path: Path) -> bool:
    """False for a file that holds only its docstring (most package __init__ files): editing it changes no result."""
    body = ast.parse(path.read_text()).body
    return any(not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)) for node in body)


def _taken_defaults(params: Params, raw: dict, name: str) -> list[str]:
    """The method defaults a distilled run takes: its method's keys that neither its entry nor `defaults` gives."""
    source = params.sources[name]
    given = (raw.get("defaults") or {}, raw["runs"][source.entry] or {})
    return [k for k in METHODS[params.runs[name].distill.method]["defaults"]
            if not any(isinstance(g.get("distill"), dict) and g["distill"].get(k) is not None for g in given)]


def _run_tables(params: Params, raw: dict, name: str) -> dict[str, list[str]]:
    """The name-table entries and schema defaults behind a run and every run upstream of it: each one's model, the
    schema classes whose defaults it or its dataset takes, and, if distilled, its method's module, whether alpha
    applies and the method defaults it takes."""
    found: dict[str, set[str]] = {}
    for n in (name, *ancestors(params, name)):
        run, source = params.runs[n], params.sources[n]
        found.setdefault(MODELS_TABLE, set()).add(f"MODELS.{run.model}")
        _add(found, _defaults_taken(run, [raw.get("defaults") or {}, raw["runs"][source.entry] or {}],
                                    skip=source.unused - {"seeds", "seed"}))
        _add(found, _defaults_taken(params.datasets[run.dataset], [raw["datasets"][run.dataset]]))
        if run.teacher is not None:
            m = run.distill.method
            found.setdefault(METHODS_TABLE, set()).update(
                {f"METHODS.{m}.module", f"METHODS.{m}.uses_alpha",
                 *(f"METHODS.{m}.defaults.{k}" for k in _taken_defaults(params, raw, n))})
    return _tables(found)


def _tables(*found: dict[str, set[str]]) -> dict[str, list[str]]:
    """Table entries from several sources, merged: file -> sorted keys."""
    merged: dict[str, set[str]] = {}
    for more in found:
        _add(merged, more)
    return {path: sorted(keys) for path, keys in merged.items()}


def _defaults_taken(value: BaseModel, given: list, skip=frozenset()) -> dict[str, set[str]]:
    """Schema classes (file -> class names) whose field defaults `value` takes: its own class where a field is not
    given (in any of the `given` mappings), and those of its nested settings. A class's defaults are one entry, so
    editing a default re-runs what takes any default of that class, in both tools."""
    given = [g for g in given if isinstance(g, dict)]
    cls = type(value)
    found: dict[str, set[str]] = {}
    for key in cls.model_fields:
        if key in skip:
            continue
        present = [g[key] for g in given if key in g]
        if not present and _class_defaults(cls):  # a class with defaults of its own
            found.setdefault(_source_file(cls), set()).add(cls.__name__)
        nested = getattr(value, key)
        if isinstance(nested, BaseModel):
            _add(found, _defaults_taken(nested, present))
    return found


def _source_file(cls: type) -> str:
    return cls.__module__.replace(".", "/") + ".py"


def _add(found: dict[str, set[str]], more: dict[str, set[str]]) -> None:
    for path, keys in more.items():
        found.setdefault(path, set()).update(keys)


def _table_value(path: str, key: str):
    """A table entry, e.g. `MODELS.resnet20` of kdlib/models/registry.py, `METHODS.dkd.defaults.beta` of
    kdlib/distill/methods.py, or a schema class's defaults, `Optimizer` of kdlib/config/schema.py."""
    name, *parts = key.split(".")
    node = getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), name)
    if isinstance(node, type) and issubclass(node, BaseModel):
        node = _class_defaults(node)
    for part in parts:
        node = node[part]
    return node


def _class_defaults(cls: type[BaseModel]) -> dict:
    """A schema class's field defaults; its nested settings' defaults belong to their own classes."""
    return {name: f.default for name, f in cls.model_fields.items()
            if not f.is_required() and not isinstance(f.default, BaseModel)}


def _values(recipes: dict, tables: dict[str, list[str]]) -> str:
    """What Snakemake compares to decide a re-run: the resolved recipes and the table entries a stage uses."""
    used = {path: {key: _table_value(path, key) for key in keys} for path, keys in tables.items()}
    return json.dumps({**recipes, "tables": used}, sort_keys=True)


def _run_recipes(params: Params, name: str, stage: int | None = None) -> dict:
    """The resolved recipe of a run (of `stage`, for a StableKD stage) and of its teachers, and its dataset."""
    runs = {name: params.runs[name].recipe(stage), **{n: params.runs[n].recipe() for n in ancestors(params, name)}}
    return {"dataset": params.datasets[params.runs[name].dataset].model_dump(mode="json"), "runs": runs}


def _export_recipe(params: Params, raw: dict) -> dict:
    """An export stage's tables and values: the `export` settings (how latencies are timed)."""
    tables = _tables(_defaults_taken(params.export, [raw.get("export") or {}]))
    return {"tables": tables, "values": _values({"export": params.export.model_dump()}, tables)}


def stages(params_file: str = DEFAULT_PARAMS, params: Params | None = None) -> list[Stage]:
    params = params or load_params(params_file)
    raw = yaml.safe_load(Path(params_file).read_text())
    at, exporting = params.layout, _export_recipe(params, raw)  # every export stage's (the same)
    out: list[Stage] = []
    for ds in params.datasets:
        if not any(r.dataset == ds for r in params.runs.values()):
            continue  # prepare only what some run uses
        source = [params.datasets[ds].path] if params.datasets[ds].source == "imagefolder" else []
        tables = _tables(_defaults_taken(params.datasets[ds], [raw["datasets"][ds]]))
        out.append(Stage(f"prepare_{ds}", "stages/prepare.py", ds,
                         deps_list(["stages/prepare.py"], source, code_deps("stages/prepare.py")),
                         outs=[str(at.dataset_dir(ds) / f) for f in ("train.pt", "test.pt", "meta.json")],
                         tables=tables, values=_values(params.datasets[ds].model_dump(mode="json"), tables)))
    out += _teacher_output_stages(params, raw)
    for name, run in params.runs.items():
        data = at.dataset_dir(run.dataset)
        folder = at.run_dir(name)
        tables = _run_tables(params, raw, name)
        values = _values(_run_recipes(params, name), tables)
        all_data = [str(data / f) for f in ("train.pt", "test.pt", "meta.json")]
        test_data = all_data[1:]
        model_code = module_deps(model_module(run.model))
        # Students learn from the teacher's inference form: an ACB teacher's fused deploy.pt.
        teacher, teacher_code, method_code = [], [], []
        if run.caches_teacher():  # the teacher's logits over its stream, not the teacher
            teacher = [str(f) for f in at.teacher_outputs_files(stream_name(params, name))]
            method_code = module_deps(METHODS[run.distill.method]["module"])
        elif run.teacher:
            teacher = [str(at.inference_checkpoint(run.teacher, params.runs[run.teacher].block_type))]
            teacher_code = module_deps(model_module(params.runs[run.teacher].model))
            method_code = module_deps(METHODS[run.distill.method]["module"])
        train_code = code_deps("stages/train.py") + model_code + teacher_code + method_code
        # A StableKD run: one node per stage but the last, each continuing from the one before.
        previous: list[str] = []
        for stage in range(len(run.stage_epochs()) - 1):
            checkpoint = str(folder / f"stage{stage}.pt")
            out.append(Stage(f"train_{name}_stage{stage}", "stages/train.py", f"{name} --stage {stage}",
                             deps_list(["stages/train.py"], all_data, teacher, previous, sorted(set(train_code))),
                             outs=[checkpoint], tables=tables,
                             values=_values(_run_recipes(params, name, stage), tables), gpu=True, all_cores=True))
            previous = [checkpoint]
        out.append(Stage(f"train_{name}", "stages/train.py", name,
                         deps_list(["stages/train.py"], all_data, teacher, previous, sorted(set(train_code))),
                         outs=[str(folder / "model.pt")], metrics=[str(folder / "metrics.json")],
                         plots=[str(folder / "history.csv")], tables=tables, values=values, gpu=True,
                         all_cores=True))
        checkpoint = [str(at.inference_checkpoint(name, run.block_type))]
        if run.block_type == "acb":
            out.append(Stage(f"fuse_{name}", "stages/fuse.py", name,
                             deps_list(["stages/fuse.py"], test_data, [str(folder / "model.pt")],
                                       sorted(set(code_deps("stages/fuse.py") + model_code))),
                             outs=[str(folder / "deploy.pt")], records=[str(folder / "fuse.json")], all_cores=True))
        out.append(Stage(f"export_{name}", "stages/export.py", name,
                         deps_list(["stages/export.py"], test_data, checkpoint,
                                   [str(folder / "model.pt")] if run.block_type == "acb" else [],
                                   sorted(set(code_deps("stages/export.py") + model_code))),
                         outs=[str(folder / "model.onnx")], metrics=[str(folder / "eval.json")],
                         records=[str(folder / f) for f in ("export.json", "samples.json")],
                         **exporting, all_cores=True))
    out += _dense_stages(params, raw, exporting)
    keys = [k for k in ("profile", "description", "datasets", "defaults", "runs", "chains", "report", "export",
                        "dense") if k in raw]
    # The report names methods by their table labels; its values: those keys and labels.
    labels = {f"METHODS.{r.distill.method}.label" for r in params.runs.values() if r.teacher is not None}
    tables = {METHODS_TABLE: sorted(labels)} if labels else {}
    results = [str(at.run_dir(n) / f) for n, r in params.runs.items()
               for f in ("metrics.json", "history.csv", "eval.json", "samples.json", "export.json")
               + (("fuse.json",) if r.block_type == "acb" else ())]
    # The test images too: the prediction figure shows some of them.
    data = [str(at.dataset_dir(ds) / f) for ds in sorted({r.dataset for r in params.runs.values()})
            for f in ("meta.json", "test.pt")]
    dense = [str(at.dense_data_dir(name) / f) for name in params.dense for f in ("meta.json", "test.pt")]
    dense += [str(at.dense_run_dir(name, role) / f) for name in params.dense for role in DENSE_ROLES
              for f in ("metrics.json", "history.csv", "predictions.pt")
              + (("export.json",) if role in DENSE_STUDENTS else ())]
    # Seed 003's time table charges a run that replays teacher logits its teacher's seconds, from the cache's record.
    records = [str(at.teacher_outputs_dir(stream) / "stream.json") for stream in streams(params)]
    out.append(Stage("tables", "stages/tables.py", None,
                     deps_list(["stages/tables.py"], data, results, records, dense,
                               sorted(set(code_deps("stages/tables.py")
                                          + module_deps(*(study.module for study in applicable(params)))))),
                     reports=report_outputs(params), tables=tables,
                     values=_values({k: raw[k] for k in keys}, tables)))
    return out


def _teacher_output_stages(params: Params, raw: dict) -> list[Stage]:
    """Per training stream that runs replay their teacher's logits from: the stage that computes them. Its recipe is
    the stream's (not its readers' KD settings: a temperature sweep shares one)."""
    out, at = [], params.layout
    storage = _defaults_taken(params.teacher_outputs, [raw.get("teacher_outputs") or {}])
    not_stream = set(Run.model_fields) - set(STREAM_KEYS)
    for stream, readers in streams(params).items():
        run = params.runs[readers[0]]
        given = lambda r: [raw.get("defaults") or {}, raw["runs"][params.sources[r].entry] or {}]  # noqa: E731
        taken = [_defaults_taken(params.runs[r], given(r), skip=not_stream) for r in readers]
        tables = _tables(_run_tables(params, raw, run.teacher), storage, *taken)
        out.append(Stage(f"teacher_outputs_{stream}", "stages/teacher_outputs.py", stream,
                         deps_list(["stages/teacher_outputs.py"],
                                   [str(at.dataset_dir(run.dataset) / f) for f in ("train.pt", "test.pt", "meta.json")],
                                   [str(at.inference_checkpoint(run.teacher, params.runs[run.teacher].block_type))],
                                   sorted(set(code_deps("stages/teacher_outputs.py")
                                              + module_deps(model_module(params.runs[run.teacher].model))))),
                         outs=[str(f) for f in at.teacher_outputs_files(stream)], tables=tables,
                         values=_values(stream_recipe(params, readers[0]), tables), gpu=True, all_cores=True))
    return out


def _dense_stages(params: Params, raw: dict, exporting: dict) -> list[Stage]:
    """Per dense experiment: its data, then the teacher and the scratch student, then the distilled student."""
    if not params.dense:
        return []
    from kdlib.dense.checks import problems  # imports torch: only for profiles with dense experiments
    found = [p for name, exp in params.dense.items() for p in problems(name, exp)]
    if found:
        raise KDError(found[0] if len(found) == 1 else "\n  " + "\n  ".join(found))
    out, at = [], params.layout
    for name, exp in params.dense.items():
        given = raw["dense"][name]
        data = [str(at.dense_data_dir(name) / f) for f in ("train.pt", "test.pt", "meta.json")]
        unread = lambda role: set(type(exp).model_fields) - set(exp.fields(role))  # noqa: E731
        schema = lambda role: _defaults_taken(exp, [given], skip=unread(role))  # noqa: E731
        tables = _tables(schema("data"))
        out.append(Stage(f"prepare_dense_{name}", "stages/dense_prepare.py", name,
                         deps_list(["stages/dense_prepare.py"], exp.data.inputs(),
                                   code_deps("stages/dense_prepare.py")),
                         outs=data, tables=tables,
                         values=_values(exp.recipe("data"), tables)))
        for role in DENSE_ROLES:
            folder = at.dense_run_dir(name, role)
            teacher = [str(at.dense_run_dir(name, "teacher") / "model.pt")] if role == "kd" else []
            tables = _tables({DENSE_TABLE: set(role_entries(exp, role))}, schema(role))
            code = code_deps("stages/dense_train.py") + module_deps(*role_modules(exp, role))
            out.append(Stage(f"train_dense_{name}_{role}", "stages/dense_train.py", f"{name} {role}",
                             deps_list(["stages/dense_train.py"], data, teacher, sorted(set(code))),
                             outs=[str(folder / "model.pt"), str(folder / "predictions.pt")],
                             metrics=[str(folder / "metrics.json")], plots=[str(folder / "history.csv")],
                             tables=tables,
                             values=_values(exp.recipe(role), tables), gpu=True, all_cores=True))
            if role in DENSE_STUDENTS:  # deployed: exported to ONNX, proven by the task's metric, timed
                out.append(Stage(f"export_dense_{name}_{role}", "stages/dense_export.py", f"{name} {role}",
                                 deps_list(["stages/dense_export.py"], data[1:], [str(folder / "model.pt"),
                                                                                  str(folder / "metrics.json")],
                                           sorted(set(code_deps("stages/dense_export.py")
                                                      + module_deps(*role_modules(exp, role))))),
                                 outs=[str(folder / "model.onnx")], records=[str(folder / "export.json")],
                                 **exporting, all_cores=True))
    return out


def downstream(stages: list[Stage]) -> dict[str, set[str]]:
    """Per stage, every stage that reads its outputs, directly or not."""
    producer = {out: s.name for s in stages for out in s.outputs}
    readers: dict[str, set[str]] = {s.name: set() for s in stages}
    for s in stages:
        for dep in s.deps:
            if dep in producer:
                readers[producer[dep]].add(s.name)
    found: dict[str, set[str]] = {}

    def below(name: str) -> set[str]:
        if name not in found:
            found[name] = set(readers[name]).union(*map(below, readers[name]))
        return found[name]

    return {s.name: below(s.name) for s in stages}


def recipe_code() -> list[str]:
    """What the recipes stage runs: kdlib.pipeline and every kdlib module it imports (the config package and the
    name tables included: this stage is where their values are resolved)."""
    return code_deps("kdlib/pipeline.py", skip=())


def write_recipes(listed: list[Stage], layout: Layout) -> tuple[int, int]:
    """Each stage's values as its recipe file, rewritten only where they changed (and the files of stages gone
    removed): DVC then re-runs exactly the stages whose recipe changed. Returns (written, stages with one)."""
    found = {layout.recipe_file(s.name): json.dumps(json.loads(s.values), indent=1, sort_keys=True) + "\n"
             for s in listed if s.values}
    written = 0
    for path, text in found.items():
        if not path.is_file() or path.read_text() != text:
            atomic_write_text(path, text)
            written += 1
    for stale in set(layout.recipes.glob("*.json")) - set(found):
        stale.unlink()
    return written, len(found)


def dvc_file(params_file: str, params: Params) -> Path:
    """A profile's DVC pipeline: dvc.yaml for params.yaml, else pipelines/<profile>/dvc.yaml (its dvc.lock beside
    it), so that each profile has its own pipeline beside the default one, which `dvc repro` and `dvc status`
    without a target cover too."""
    return ROOT_PIPELINE if is_default(params_file) else profile_pipeline(params)


def profile_pipeline(params: Params) -> Path:
    return Path("pipelines") / params.profile / "dvc.yaml"


def dvc_command(params_file: str) -> str:
    """The command that writes the params file's DVC pipeline."""
    return stage_command("-m", ["kdlib.pipeline", "dvc"], params_file)


def _claimed_elsewhere(target: Path, params: Params) -> Path | None:
    """The other pipeline file, if any, that already runs this profile (the root dvc.yaml, or the profile's
    pipelines/<profile>/dvc.yaml): DVC refuses two stages with one output."""
    others = [p for p in (ROOT_PIPELINE, profile_pipeline(params)) if p != target]
    for other in (p for p in others if p.is_file()):
        recipes = (yaml.safe_load(other.read_text()) or {}).get("stages", {}).get(RECIPES, {})
        if any(str(params.layout.recipes) in out for out in recipes.get("outs", [])):
            return other
    return None


def dvc_yaml(params_file: str = DEFAULT_PARAMS, params: Params | None = None,
             listed: list[Stage] | None = None) -> tuple[Path, dict]:
    """Where the profile's DVC pipeline goes, and what it holds (from its params and stages, if given)."""
    params = params or load_params(params_file)
    listed, target = listed or stages(params_file, params), dvc_file(params_file, params)
    other = _claimed_elsewhere(target, params)
    if other is not None:
        raise KDError(f"{params_file}: profile '{params.profile}' is run by {other} already, and two pipelines "
                      f"cannot write the same folders (results/{params.profile}/); give this file another profile "
                      "name, or delete the other pipeline file")
    # A pipeline file in a folder runs its commands, and reads its paths, from the project root all the same.
    wdir = {} if target.parent == Path(".") else {"wdir": os.path.relpath(".", target.parent)}

    def entry(stage: Stage) -> dict:
        # The script, then its recipe (where it has values), then the rest.
        recipe = [str(params.layout.recipe_file(stage.name))] if stage.values else []
        d = {"cmd": stage.cmd(params_file), **wdir, "deps": deps_list(stage.deps[:1], recipe, stage.deps[1:])}
        # persist: DVC leaves the outputs in place while the stage runs (it would delete them first), so a stage
        # that fails (a params typo, a full disk) keeps the last good results; stages write atomically at the end.
        for kind in ("outs", "metrics", "plots"):
            paths = getattr(stage, kind)
            if paths:
                d[kind] = [{p: {"persist": True} if kind == "outs" else {"cache": False, "persist": True}}
                           for p in paths]
        if stage.records or stage.reports:
            d.setdefault("outs", []).extend({p: {"cache": False, "persist": True}} for p in stage.records + stage.reports)
        return d

    # The whole params file as params (an empty key list): `dvc params diff` and `dvc exp show` see every key,
    # and an edit that changes no value (a comment) re-runs nothing.
    recipes = {"cmd": stage_command("-m", ["kdlib.pipeline", RECIPES], params_file), **wdir,
               "deps": recipe_code(), "params": [{params_file: []}],
               "outs": [{str(params.layout.recipes): {"persist": True}}]}
    return target, {"stages": {RECIPES: recipes, **{s.name: entry(s) for s in listed}}}


def _stale_pipeline(params_file: str, params: Params, listed: list[Stage]) -> str | None:
    """Why the profile's DVC pipeline file no longer runs what the params file describes (stages added, removed or
    rewired: a run, a seed or a shared teacher-output cache), or None. DVC runs the stages its file lists: without
    this, `dvc repro` after such an edit would silently skip the new stages."""
    target, pipeline = dvc_yaml(params_file, params, listed)
    if not target.is_file():
        return None
    # In any order: moving a run within the params file reorders lists of paths, and DVC reads them as sets.
    unordered = lambda entries: {name: {key: sorted(map(json.dumps, v)) if isinstance(v, list) else v  # noqa: E731
                                        for key, v in entry.items()} for name, entry in entries.items()}
    written = unordered((yaml.safe_load(target.read_text()) or {}).get("stages") or {})
    wanted = unordered(pipeline["stages"])
    if written == wanted:
        return None
    added, removed = sorted(set(wanted) - set(written)), sorted(set(written) - set(wanted))
    changed = sorted(n for n in set(written) & set(wanted) if written[n] != wanted[n])
    what = "; ".join(f"{label}: {', '.join(names[:5])}{' ...' if len(names) > 5 else ''}"
                     for label, names in (("new stages", added), ("stages gone", removed),
                                          ("stages rewired", changed)) if names)
    return (f"{target} no longer matches {params_file} ({what}); run `{dvc_command(params_file)}`, then "
            "`dvc repro` again")


class _PlainDumper(yaml.SafeDumper):
    """Lists of paths and keys on wrapped lines, and every entry written out (no &anchors / *aliases)."""

    def ignore_aliases(self, data) -> bool:
        return True


def render_dvc_yaml(params_file: str = DEFAULT_PARAMS) -> tuple[Path, str]:
    """The profile's DVC pipeline file and its text."""
    target, pipeline = dvc_yaml(params_file)
    header = (f"# Generated from {params_file} by `{dvc_command(params_file)}`; do not edit.\n"
              "# The Snakefile builds the same stages from the same source (kdlib/pipeline.py), all but `recipes`:\n"
              "# it reads the params file once and writes each stage's resolved values to\n"
              "# results/<profile>/recipes/<stage>.json (Snakemake compares them as each rule's params). A stage's deps\n"
              "# are its script, its recipe, its data, its teacher's checkpoint, then the kdlib code it runs (fusing\n"
              "# and exporting read the checkpoint, which reflects the run's recipe).\n")
    return target, header + yaml.dump(pipeline, Dumper=_PlainDumper, sort_keys=False, width=120,
                                      default_flow_style=None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kdlib.pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["dvc", RECIPES, "list"],
                        help=f"dvc: write the profile's DVC pipeline (dvc.yaml for params.yaml, else "
                             f"pipelines/<profile>/dvc.yaml); {RECIPES}: write the stages' recipe files "
                             "(DVC's recipes stage); list: print the stages")
    parser.add_argument("--params", default=DEFAULT_PARAMS)
    parser.add_argument("--check", action="store_true", help="with dvc: fail if the pipeline file is not up to date")
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            for s in stages(args.params):
                print(f"{s.name:32s} {s.cmd(args.params)}")
            sys.stdout.flush()
            return 0
        if args.command == RECIPES:
            params = load_params(args.params)
            listed = stages(args.params, params)
            stale = _stale_pipeline(args.params, params, listed)
            if stale:
                print(f"error: {stale}", file=sys.stderr)
                return 2
            written, total = write_recipes(listed, params.layout)
            print(f"{written} of {total} recipes changed ({params.layout.recipes}/)")
            return 0
        target, text = render_dvc_yaml(args.params)
        if args.check:
            if not target.is_file() or target.read_text() != text:
                print(f"error: {target} is stale; run `{dvc_command(args.params)}`", file=sys.stderr)
                return 1
            return 0
    except BrokenPipeError:  # `list | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes at exit
        return 0
    except KDError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a recipe file that cannot be written
        print(f"error: {e.filename}: {e.strerror}", file=sys.stderr)
        return 2
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    print(f"wrote {target} ({len(text.splitlines())} lines) from {args.params}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
