"""params.yaml -> the list of stages: the one source of truth for both Snakemake and DVC.

The Snakefile builds one rule per stage from `stages()`; `python -m kdlib.pipeline dvc` writes
dvc.yaml from the same list (committed; a test fails when it is stale). Each stage lists its
script and the kdlib modules that script imports as dependencies, and mirrors the params keys
of its run and of every run upstream of it, so an edit re-runs exactly what it affects.
"""
from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import yaml

from kdlib.config import DENSE_ROLES, Params, ancestors, leaves, load_params, sets
from kdlib.errors import KDError
from kdlib.paths import dataset_dir, dense_data_dir, dense_report_files, dense_run_dir, inference_checkpoint, run_dir

DEFAULT_PARAMS = "params.yaml"
LAZY_IMPORT = re.compile(r"^kdlib(\.\w+)+:\w+$")
REPORT_OUTPUTS = ("results/report.md", "results/tables/runs.md", "results/tables/teacher_student.md",
                  "results/tables/efficiency.md",
                  *(f"results/tables/seed000_table{i}.md" for i in (1, 2, 3)),
                  "results/figures/test_accuracy.png", "results/figures/seed000_curves.png")
SEED001_OUTPUTS = (*(f"results/tables/seed001_table{i}.md" for i in (4, 6, 7, 8)), "results/figures/seed001_loss_curves.png")
SEED002_OUTPUTS = ("results/tables/seed002_task1.md", "results/tables/seed002_task3.md",
                   "results/figures/seed002_accuracy_params.png", "results/figures/seed002_predictions.png")
STAGE_KINDS = ("prepare", "train", "fuse", "evaluate", "export", "dense_prepare", "dense_train", "tables")  # Stage.kind
SEED003_OUTPUTS = (*(f"results/tables/seed003_table{i}.md" for i in (2, 4, 5, 7)), "results/figures/seed003_curves.png")


def report_outputs(params: Params) -> list[str]:
    """What the tables stage writes: seed 001-003's tables only where params.yaml names their runs, and a table and
    a figure per dense experiment."""
    return [*REPORT_OUTPUTS, *(SEED001_OUTPUTS if params.report.seed001 else ()),
            *(SEED002_OUTPUTS if params.report.seed002 else ()), *(SEED003_OUTPUTS if params.report.seed003 else ()),
            *(str(f) for name in params.dense for f in dense_report_files(name))]


@dataclass(frozen=True)
class Stage:
    name: str
    script: str
    arg: str | None
    deps: list[str]
    outs: list[str] = field(default_factory=list)  # cached by DVC
    metrics: list[str] = field(default_factory=list)  # small JSON, kept in git, not cached
    plots: list[str] = field(default_factory=list)
    reports: list[str] = field(default_factory=list)  # tables and figures, kept in git
    params: list[str] = field(default_factory=list)  # params-file keys the stage depends on
    values: str = ""  # the resolved values of those keys, for Snakemake's params trigger
    gpu: bool = False
    # Snakemake caps a job's threads (OMP_NUM_THREADS) at its declared count, 1 by default: training gets
    # every core, and fusing runs alone so the latencies it measures are undisturbed.
    all_cores: bool = False

    def cmd(self, params_file: str) -> str:
        extra = "" if params_file == DEFAULT_PARAMS else f" --params {params_file}"
        return f"python {self.script}{' ' + self.arg if self.arg else ''}{extra}"

    @property
    def kind(self) -> str:
        """One of STAGE_KINDS (the script's name): what cluster profiles size."""
        return Path(self.script).stem

    @property
    def outputs(self) -> list[str]:
        return self.outs + self.metrics + self.plots + self.reports


def code_deps(script: str, root: Path = Path(".")) -> list[str]:
    """The script plus every kdlib source file it imports, directly or through other kdlib modules."""
    seen: set[str] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo += _kdlib_imports(path, root)
    return sorted(seen)


@cache
def _kdlib_imports(path: str, root: Path) -> list[str]:
    tree = ast.parse((root / path).read_text(), filename=path)
    found = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and LAZY_IMPORT.match(node.value):
            names = [node.value.split(":")[0]]  # the model registry's "module:constructor" entries
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
            if (root / candidate).is_file():
                files.append(candidate)
    return files


def _inherited(defaults: dict, run: dict, unused: frozenset) -> list[str]:
    """The `defaults.<key>` params a run takes unchanged: editing any other default cannot affect it."""
    return [".".join(("defaults",) + path) for path in leaves(defaults) if not sets(run, path) and path[0] not in unused]


def _own_keys(params: Params, raw: dict, name: str) -> set[str]:
    """The params-file keys that define one run: its entry's, and the `defaults` it takes."""
    source = params.sources[name]
    return {*source.keys, *_inherited(raw.get("defaults") or {}, raw["runs"][source.entry] or {}, source.unused)}


def _run_keys(params: Params, raw: dict, name: str, stage: int | None = None) -> list[str]:
    """The params-file keys that define a run and every run upstream of it (so DVC re-runs it when they change).
    For a StableKD stage whose work ends with it, only this stage's and the earlier stages' epochs count, so
    changing a stage's epochs re-runs that stage and the later ones only. (A run with stage_epochs has its keys
    leaf by leaf and none for `epochs`: see config._source.)"""
    own = _own_keys(params, raw, name)
    if stage is not None and params.runs[name].stages_are_independent():
        own = {k for key in own for k in ([f"{key}.{i}" for i in range(stage + 1)]
                                          if key.endswith(".distill.stage_epochs") else [key])}
    keys = {f"datasets.{params.runs[name].dataset}", *own}
    for n in ancestors(params, name):
        keys |= _own_keys(params, raw, n)
    return sorted(keys)


def _run_values(params: Params, name: str, stage: int | None = None) -> str:
    """The resolved recipe of a run (of `stage`, for a StableKD stage) and of its teachers: Snakemake re-runs
    the job when this text changes."""
    runs = {name: params.runs[name].recipe(stage), **{n: params.runs[n].recipe() for n in ancestors(params, name)}}
    return json.dumps({"dataset": params.datasets[params.runs[name].dataset].model_dump(mode="json"),
                       "runs": runs}, sort_keys=True)


def stages(params_file: str = DEFAULT_PARAMS, params: Params | None = None) -> list[Stage]:
    params = params or load_params(params_file)
    raw = yaml.safe_load(Path(params_file).read_text())
    out: list[Stage] = []
    for ds in params.datasets:
        if not any(r.dataset == ds for r in params.runs.values()):
            continue  # prepare only what some run uses
        keys = [f"datasets.{ds}"]
        source = [params.datasets[ds].path] if params.datasets[ds].source == "imagefolder" else []
        out.append(Stage(f"prepare_{ds}", "stages/prepare.py", ds, code_deps("stages/prepare.py") + source,
                         outs=[str(dataset_dir(ds) / f) for f in ("train.pt", "test.pt", "meta.json")],
                         params=keys, values=params.datasets[ds].model_dump_json()))
    for name, run in params.runs.items():
        data = dataset_dir(run.dataset)
        keys, values, folder = _run_keys(params, raw, name), _run_values(params, name), run_dir(name)
        all_data = [str(data / f) for f in ("train.pt", "test.pt", "meta.json")]
        test_data = all_data[1:]
        # Students learn from the teacher's inference form: an ACB teacher's fused deploy.pt.
        teacher = [str(inference_checkpoint(run.teacher, params.runs[run.teacher].block_type))] if run.teacher else []
        train_deps = code_deps("stages/train.py") + all_data + teacher
        # A StableKD run: one node per stage but the last, each continuing from the one before.
        previous: list[str] = []
        for stage in range(len(run.stage_epochs()) - 1):
            checkpoint = str(folder / f"stage{stage}.pt")
            out.append(Stage(f"train_{name}_stage{stage}", "stages/train.py", f"{name} --stage {stage}",
                             train_deps + previous, outs=[checkpoint], params=_run_keys(params, raw, name, stage),
                             values=_run_values(params, name, stage), gpu=True, all_cores=True))
            previous = [checkpoint]
        out.append(Stage(f"train_{name}", "stages/train.py", name, train_deps + previous,
                         outs=[str(folder / "model.pt")], metrics=[str(folder / "metrics.json")],
                         plots=[str(folder / "history.csv")], params=keys, values=values, gpu=True, all_cores=True))
        if run.block_type == "acb":
            out.append(Stage(f"fuse_{name}", "stages/fuse.py", name,
                             code_deps("stages/fuse.py") + test_data + [str(folder / "model.pt")],
                             outs=[str(folder / "deploy.pt")], metrics=[str(folder / "fuse.json")],
                             params=keys, values=values, all_cores=True))
        out.append(Stage(f"evaluate_{name}", "stages/evaluate.py", name,
                         code_deps("stages/evaluate.py") + test_data + [str(inference_checkpoint(name, run.block_type))],
                         metrics=[str(folder / "eval.json")], params=keys, values=values))
        # Like fusing, exporting runs alone: the latencies it measures are undisturbed.
        out.append(Stage(f"export_{name}", "stages/export.py", name,
                         code_deps("stages/export.py") + test_data + [str(inference_checkpoint(name, run.block_type))]
                         + ([str(folder / "model.pt")] if run.block_type == "acb" else []),
                         outs=[str(folder / "model.onnx")], metrics=[str(folder / "export.json")],
                         params=keys + (["export"] if "export" in raw else []),
                         values=json.dumps([values, params.export.model_dump()]), all_cores=True))
    out += _dense_stages(params, raw)
    keys = [k for k in ("profile", "description", "datasets", "defaults", "runs", "chains", "report", "dense")
            if k in raw]
    results = [str(run_dir(n) / f) for n, r in params.runs.items()
               for f in ("metrics.json", "history.csv", "eval.json", "export.json")
               + (("fuse.json",) if r.block_type == "acb" else ())]
    # The test images too: the prediction figure shows some of them.
    data = [str(dataset_dir(ds) / f) for ds in sorted({r.dataset for r in params.runs.values()})
            for f in ("meta.json", "test.pt")]
    dense = [str(dense_data_dir(name) / f) for name in params.dense for f in ("meta.json", "test.pt")]
    dense += [str(dense_run_dir(name, role) / f) for name in params.dense for role in DENSE_ROLES
              for f in ("metrics.json", "history.csv", "predictions.pt")]
    out.append(Stage("tables", "stages/tables.py", None, code_deps("stages/tables.py") + data + results + dense,
                     reports=report_outputs(params), params=keys, values=params.model_dump_json()))
    return out


def _dense_stages(params: Params, raw: dict) -> list[Stage]:
    """Per dense experiment: its data, then the teacher and the scratch student, then the distilled student."""
    if not params.dense:
        return []
    from kdlib.dense.nets import problems  # imports torch: only for profiles with dense experiments
    found = [p for name, exp in params.dense.items() for p in problems(name, exp)]
    if found:
        raise KDError(found[0] if len(found) == 1 else "\n  " + "\n  ".join(found))
    out = []
    for name, exp in params.dense.items():
        given = raw["dense"][name]
        keys = lambda fields: [f"dense.{name}.{f}" for f in fields if f in given]  # noqa: E731 (absent: defaults)
        data = [str(dense_data_dir(name) / f) for f in ("train.pt", "test.pt", "meta.json")]
        out.append(Stage(f"prepare_dense_{name}", "stages/dense_prepare.py", name,
                         code_deps("stages/dense_prepare.py") + exp.data.inputs(), outs=data, params=keys(exp.fields("data")),
                         values=json.dumps(exp.recipe("data"), sort_keys=True)))
        for role in DENSE_ROLES:
            folder = dense_run_dir(name, role)
            teacher = [str(dense_run_dir(name, "teacher") / "model.pt")] if role == "kd" else []
            out.append(Stage(f"train_dense_{name}_{role}", "stages/dense_train.py", f"{name} {role}",
                             code_deps("stages/dense_train.py") + data + teacher,
                             outs=[str(folder / "model.pt"), str(folder / "predictions.pt")],
                             metrics=[str(folder / "metrics.json")], plots=[str(folder / "history.csv")],
                             params=keys(exp.fields(role)), values=json.dumps(exp.recipe(role), sort_keys=True),
                             gpu=True, all_cores=True))
    return out


def dvc_yaml(params_file: str = DEFAULT_PARAMS) -> dict:
    def entry(stage: Stage) -> dict:
        d = {"cmd": stage.cmd(params_file), "deps": stage.deps}
        d["params"] = stage.params if params_file == DEFAULT_PARAMS else [{params_file: stage.params}]
        for kind in ("outs", "metrics", "plots"):
            paths = getattr(stage, kind)
            if paths:
                d[kind] = paths if kind == "outs" else [{p: {"cache": False}} for p in paths]
        if stage.reports:
            d.setdefault("outs", []).extend({p: {"cache": False}} for p in stage.reports)
        return d

    return {"stages": {s.name: entry(s) for s in stages(params_file)}}


def render_dvc_yaml(params_file: str = DEFAULT_PARAMS) -> str:
    header = ("# Generated from params.yaml by `python -m kdlib.pipeline dvc`; do not edit.\n"
              "# The Snakefile builds the same stages from the same source (kdlib/pipeline.py).\n")
    return header + yaml.safe_dump(dvc_yaml(params_file), sort_keys=False, width=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kdlib.pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["dvc", "list"], help="dvc: write dvc.yaml; list: print the stages")
    parser.add_argument("--params", default=DEFAULT_PARAMS)
    parser.add_argument("--check", action="store_true", help="with dvc: fail if dvc.yaml is not up to date")
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            for s in stages(args.params):
                print(f"{s.name:32s} {s.cmd(args.params)}")
            return 0
        text = render_dvc_yaml(args.params)
    except KDError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    target = Path("dvc.yaml")
    if args.check:
        if not target.is_file() or target.read_text() != text:
            print("error: dvc.yaml is stale; run `python -m kdlib.pipeline dvc`", file=sys.stderr)
            return 1
        return 0
    target.write_text(text)
    print(f"wrote dvc.yaml ({len(text.splitlines())} lines) from {args.params}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
