import copy
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "tiny.yaml"
BIN = Path(sys.executable).parent  # the venv's snakemake and dvc
SNAKEMAKE, DVC = str(BIN / "snakemake"), str(BIN / "dvc")


@pytest.fixture
def tiny_raw() -> dict:
    return copy.deepcopy(yaml.safe_load(TINY.read_text()))


def make_workspace(path: Path, params: Path = TINY) -> Path:
    """A fresh project copy (code, Snakefile, the given profile as params.yaml) with git and DVC initialised."""
    for item in ("kdlib", "stages", "Snakefile", "report", "profiles", "configs", ".dvcignore"):
        src = REPO / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, path / item)
    shutil.copy(params, path / "params.yaml")
    (path / ".gitignore").write_text("last.pt\n.snakemake/\n")
    for cmd in (["git", "init", "-q"], [str(BIN / "dvc"), "init", "-q"],
                [str(BIN / "dvc"), "config", "core.analytics", "false"],
                [sys.executable, "-m", "kdlib.pipeline", "dvc"]):
        subprocess.run(cmd, cwd=path, check=True, capture_output=True)
    return path


def _env(cwd: Path, env: dict | None) -> dict:
    """A clean environment for a command in `cwd` (`env` adds to it or overrides it)."""
    return {"PATH": f"{BIN}:/usr/bin:/bin", "PYTHONPATH": str(cwd), "HOME": str(cwd), "KDLIB_DEVICE": "cpu",
            "OMP_NUM_THREADS": "2", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@t"} | (env or {})


def run_all(cmds: list[list[str]], cwd: Path, check: bool = True,
            env: dict | None = None) -> list[subprocess.CompletedProcess]:
    """Commands that only read the workspace, run side by side (each tool's dry run is mostly its own start-up)."""
    procs = [subprocess.Popen(cmd, cwd=cwd, env=_env(cwd, env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for cmd in cmds]
    done = [subprocess.CompletedProcess(cmd, 0, *proc.communicate()) for cmd, proc in zip(cmds, procs)]
    for out, proc in zip(done, procs):
        out.returncode = proc.returncode
        if check and out.returncode != 0:
            raise AssertionError(f"{' '.join(out.args)} failed ({out.returncode}):\n{out.stdout[-3000:]}\n"
                                 f"{out.stderr[-3000:]}")
    return done


def run(cmd: list[str], cwd: Path, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """`cmd` in `cwd` with a clean environment (`env` adds to it or overrides it)."""
    return run_all([cmd], cwd, check, env)[0]


@pytest.fixture(scope="session")
def finished(tmp_path_factory) -> Path:
    """A workspace where the whole tiny DAG has run and both tools record it as up to date (shared: read it,
    or restore what you change)."""
    ws = make_workspace(tmp_path_factory.mktemp("e2e"))
    run([sys.executable, "-m", "kdlib.warm", SNAKEMAKE, "--cores", "2", "--resources", "gpu=1"], ws)  # as `make`
    run([DVC, "commit", "--force", "--quiet"], ws)
    run([SNAKEMAKE, "--touch", "--cores", "1", "--quiet"], ws)
    return ws


def descendants(direct: set[str], params: Path = TINY) -> set[str]:
    """`direct` and every stage of the profile that reads, directly or not, what they write."""
    from kdlib.pipeline import downstream, stages
    below = downstream(stages(str(params)))
    return set(direct).union(*(below[name] for name in direct))


def by_params(planned: set[str]) -> set[str]:
    """Of the stages Snakemake plans after a params edit, those `dvc status` names: fusing and exporting
    read a run's checkpoint, not its recipe, so DVC re-runs them once the checkpoint changes (Snakemake plans them
    at once, as its inputs will change)."""
    return {s for s in planned if not s.startswith(("fuse_", "export_"))}


def to_rerun(ws: Path, *target: str, by_dvc: bool = False) -> tuple[set[str], set[str]]:
    """The stages `snakemake -n` plans and those `dvc status` names (for `target` only, if given) once the edit is
    resolved into recipe files: by `dvc repro recipes` as a user would (`by_dvc`), or, quicker, by the command that
    stage runs, beside Snakemake's dry run (DVC then also names `recipes`, left out here). The recipe files and
    dvc.lock are restored afterwards."""
    saved = {path: (path.read_bytes(), os.stat(path)) for path in [ws / "dvc.lock", *(ws / "results/tiny/recipes").glob("*")]}
    try:
        if by_dvc:
            run([DVC, "repro", "--single-item", "--quiet", "recipes"], ws)
            snake, dvc = run_all([[SNAKEMAKE, "-n", *target], [DVC, "status", *target]], ws)
        else:
            snake, _ = run_all([[SNAKEMAKE, "-n", *target], [sys.executable, "-m", "kdlib.pipeline", "recipes"]], ws)
            dvc = run([DVC, "status", *target], ws)
    finally:
        for path in set((ws / "results/tiny/recipes").glob("*")) - set(saved):
            path.unlink()
        for path, (content, times) in saved.items():
            path.write_bytes(content)
            os.utime(path, ns=(times.st_atime_ns, times.st_mtime_ns))
    return (set(re.findall(r"^rule (\w+):", snake.stdout, re.M)) - {"all"},
            set(re.findall(r"^(\w+):$", dvc.stdout, re.M)) - ({"recipes"} if not by_dvc else set()))


def assert_up_to_date(ws: Path) -> None:
    """Both tools find nothing to do."""
    snake, dvc = run_all([[SNAKEMAKE, "-n"], [DVC, "status"]], ws)
    assert "Nothing to be done" in snake.stdout, snake.stdout[-3000:]
    assert "Data and pipelines are up to date" in dvc.stdout, dvc.stdout[-3000:]


def edited_file(ws: Path, path: str, edit) -> tuple[set[str], set[str]]:
    """What each tool would re-run after `edit(text) -> text` of one file (restored afterwards, times too)."""
    file = ws / path
    original, times = file.read_text(), os.stat(file)
    changed = edit(original)
    assert changed != original, f"the edit did not apply to {path}"
    file.write_text(changed)
    try:
        return to_rerun(ws)
    finally:
        file.write_text(original)
        os.utime(file, ns=(times.st_atime_ns, times.st_mtime_ns))

