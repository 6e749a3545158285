"""Sharing the pipeline's outputs through the DVC remote (`make push`, a fresh clone, `make pull`), and a kdlib
source edit re-running exactly the stages that import it and what depends on them."""
import filecmp
import os
import re
import shutil

import yaml

from kdlib.pipeline import stages
from tests.conftest import (BIN, DVC, REPO, SNAKEMAKE, TINY, assert_up_to_date, by_params, descendants, edited_file, run,
                            run_all, to_rerun)

# Exactly what the README tells users to type, with the test's venv (no install: -o skips that prerequisite).
MAKE = ["make", f"VENV={BIN.parent}", "-o", f"{BIN}/kdlib-installed"]
EDITED = "kdlib/reparam/deploy.py"  # imported by the fuse stage only


def cached_outs(ws):
    """The outputs DVC caches (datasets and checkpoints); metrics, history and tables are kept in git."""
    stages = yaml.safe_load((ws / "dvc.yaml").read_text())["stages"]
    return sorted(path for s in stages.values() for out in s.get("outs", []) for path, flags in out.items()
                  if flags.get("cache", True))


def test_push_then_pull_into_a_fresh_clone_reruns_nothing(finished, tmp_path):
    # The repository's own remote configuration and Makefile, committed with everything git keeps.
    shutil.copy(REPO / ".dvc" / "config", finished / ".dvc" / "config")
    shutil.copy(REPO / "Makefile", finished / "Makefile")
    with open(finished / ".gitignore", "a") as f:
        f.write("__pycache__/\n")
    run(["git", "add", "-A"], finished)
    run(["git", "commit", "-q", "--allow-empty", "-m", "tiny pipeline"], finished)
    outs = cached_outs(finished)
    assert any(o.endswith("/deploy.pt") for o in outs) and any(o.endswith("stage0.pt") for o in outs)
    assert not set(outs) & set(run(["git", "ls-files"], finished).stdout.split())  # they travel through DVC only

    # The default remote is a folder beside the checkout (the url is relative to .dvc/).
    storage = finished.parent / "kdlib-dvc-storage"
    assert run([DVC, "remote", "list"], finished).stdout.split() == ["local", str(storage), "(default)"]
    pushed = run(MAKE + ["push"], finished).stdout
    assert re.search(r"^\d+ files pushed$", pushed, re.M), pushed
    lock = yaml.safe_load((finished / "dvc.lock").read_text())["stages"]
    md5 = {o["path"]: o["md5"] for s in lock.values() for o in s.get("outs", [])}
    for out in outs:  # every dataset file and checkpoint is in the remote
        assert (storage / "files" / "md5" / md5[out][:2] / md5[out][2:]).is_file(), out

    # A clone elsewhere: its default remote points nowhere, so point it at the storage, as a user would.
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(finished), str(clone)], tmp_path)
    run([DVC, "remote", "modify", "--local", "local", "url", str(storage)], clone)
    assert run([DVC, "remote", "list"], clone).stdout.split() == ["local", str(storage), "(default)"]
    run(["git", "check-ignore", "-q", ".dvc/config.local"], clone)  # per machine, never committed

    # A bare `dvc pull` leaves the checkpoints newer than the git-tracked metrics made from them:
    # Snakemake, which compares times, would retrain. That is what `make pull` settles.
    run([DVC, "pull", "--quiet"], clone)
    assert "Nothing to be done" not in run([SNAKEMAKE, "-n"], clone).stdout

    # Where the pulled outputs are not what dvc.lock records for this checkout (here a params edit not yet run),
    # `make pull` says so and leaves the times alone: touching would make Snakemake record the edit as done.
    params = clone / "params.yaml"
    original = params.read_text()
    raw = yaml.safe_load(original)
    raw["runs"]["gen3"]["distill"] = {"alpha": 0.5}
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    times = {out: os.stat(clone / out).st_mtime_ns for out in outs}
    refused = run(MAKE + ["pull"], clone, check=False)
    assert refused.returncode != 0 and "not up to date, so file times were left alone" in refused.stderr
    assert "recipes:\n\tchanged deps:\n\t\tparams.yaml:" in refused.stdout and times == {out: os.stat(clone / out).st_mtime_ns for out in outs}
    params.write_text(original)

    pulled = run(MAKE + ["pull"], clone).stdout
    assert "pulled: dvc status and snakemake -n both say up to date" in pulled
    for out in outs:  # files, and the recipes folder file by file
        files = sorted((finished / out).iterdir()) if (finished / out).is_dir() else [finished / out]
        for file in files:
            assert filecmp.cmp(clone / file.relative_to(finished), file, shallow=False), file
    # The clone had no Snakemake metadata: `make pull` recorded every job's (a plain --touch skips the prepare
    # stages, and Snakemake would then miss a dataset edit), so a params edit re-runs exactly what it affects.
    status, dry = run_all([[DVC, "status"], [SNAKEMAKE, "-n"]], clone)
    assert "Data and pipelines are up to date" in status.stdout
    assert "Nothing to be done" in dry.stdout and "missing provenance" not in dry.stdout + dry.stderr
    raw = yaml.safe_load(original)
    raw["datasets"]["digits"]["image_size"] = 12
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    snake, dvc = to_rerun(clone)
    assert dvc == by_params(snake) and {"prepare_digits", "train_teacher", "export_teacher", "tables"} <= snake
    assert not any("dense" in name for name in snake)


def test_code_edit_reruns_the_stages_that_import_it_and_their_descendants(finished):
    direct = {s.name for s in stages(str(TINY)) if EDITED in s.deps}
    assert direct == {"fuse_teacher", "fuse_student_acb"}  # a module only some stages import
    downstream = descendants(direct)
    assert {"train_student_kd", "export_teacher", "tables"} <= downstream  # the fused teacher teaches

    snake, dvc = edited_file(finished, EDITED, lambda text: text + "# an edit\n")
    # DVC names the stages whose own dependencies changed; Snakemake plans those and everything downstream.
    assert dvc == direct and snake == downstream
    assert_up_to_date(finished)
