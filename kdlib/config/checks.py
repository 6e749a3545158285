"""Cross-checks that need the whole params file: names that refer to other runs, datasets and chains, report
roles, stage pairing of the methods that pair stages, and teacher cycles."""
from __future__ import annotations

from kdlib.config.dense import DENSE_ROLES
from kdlib.config.params import Params
from kdlib.config.schema import Report, Run
from kdlib.config.suggest import _suggest
from kdlib.distill.methods import METHODS
from kdlib.models.registry import STAGES


def _cross_check(params: Params, runs: dict[str, Run]) -> list[str]:
    problems = []
    if not runs:
        problems.append("runs: no runs defined")
    for name, run in runs.items():
        if run.dataset not in params.datasets:
            problems.append(f"runs.{name}.dataset: unknown dataset '{run.dataset}'"
                            f"{_suggest(run.dataset, params.datasets)} (defined: {', '.join(params.datasets)})")
        if run.teacher is None:
            continue
        teacher = runs.get(run.teacher)
        if teacher is None:
            problems.append(f"runs.{name}.teacher: '{run.teacher}' names no run{_suggest(run.teacher, runs)}")
        elif teacher.dataset != run.dataset:
            problems.append(f"runs.{name}.teacher: '{run.teacher}' trains on '{teacher.dataset}', "
                            f"but '{name}' on '{run.dataset}'")
    problems += _report_roles(params.report, params.chains, runs)
    problems += _blockwise_pairs(runs)
    for exp in params.dense:  # their stages would share a name with the experiment's
        problems += [f"runs.{n}: the name is taken by dense experiment '{exp}'; rename the run"
                     for n in (f"dense_{exp}_{role}" for role in DENSE_ROLES) if n in runs]
        if f"dense_{exp}" in params.datasets:
            problems.append(f"datasets.dense_{exp}: the name is taken by dense experiment '{exp}'; rename the dataset")
    if not problems:
        problems += _cycles(runs)
    return problems


def _report_roles(report: Report, chains: dict, runs: dict[str, Run]) -> list[str]:
    problems = []
    if report.seed001 is not None:
        for version in ("v1", "v2"):
            name = getattr(report.seed001, version)
            if name not in runs:
                problems.append(f"report.seed001.{version}: '{name}' names no run{_suggest(name, runs)}")
            elif runs[name].teacher is None:
                problems.append(f"report.seed001.{version}: '{name}' has no teacher; name a distilled run")
    if report.seed003 is not None:
        for name in report.seed003.runs:
            if name not in runs:
                problems.append(f"report.seed003.runs: '{name}' names no run{_suggest(name, runs)}")
            elif runs[name].teacher is None:
                problems.append(f"report.seed003.runs: '{name}' has no teacher; name a distilled run")
    if report.seed002 is not None and report.seed002.chain not in chains:
        problems.append(f"report.seed002.chain: '{report.seed002.chain}' names no chain"
                        f"{_suggest(report.seed002.chain, chains)}")
    return problems


def _blockwise_pairs(runs: dict[str, Run]) -> list[str]:
    """Methods that pair stage with stage need as many stages in both networks, and StableKD's k at most
    stages + 1 (the head is a block)."""
    problems = []
    for name, run in runs.items():
        if run.teacher not in runs or not METHODS[run.distill.method]["pairs_stages"]:
            continue
        mine, theirs = STAGES[run.model], STAGES[runs[run.teacher].model]
        if mine != theirs:
            problems.append(f"runs.{name}.distill.method: '{run.distill.method}' pairs the student's stages with the "
                            f"teacher's, but '{run.model}' has {mine} and '{runs[run.teacher].model}' {theirs}")
        elif run.distill.blocks is not None and run.distill.blocks > mine + 1:
            problems.append(f"runs.{name}.distill.blocks: at most {mine + 1} for '{run.model}' (its {mine} stages "
                            f"and the head; got {run.distill.blocks})")
    return problems


def _cycles(runs: dict[str, Run]) -> list[str]:
    for start in runs:
        chain, node = [start], runs[start].teacher
        while node is not None:
            if node in chain:
                loop = chain[chain.index(node):] + [node]
                return [f"runs.{start}.teacher: teacher chain has a cycle: {' -> '.join(loop)}"]
            chain.append(node)
            node = runs[node].teacher
    return []
