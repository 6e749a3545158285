"""What the SLURM profile (profiles/slurm) submits, without a cluster.

Fake SLURM commands come first on PATH: `sbatch` records its arguments and prints a job id, `sacct` reports
every recorded job as done, and `sinfo`, `scontrol` and `sacctmgr` answer the plugin's set-up questions.
`--immediate-submit --notemp` makes Snakemake submit every job of the DAG without waiting for the ones
upstream of it to finish (on a real cluster that needs job dependencies): the real executor plugin builds
each sbatch call, and nothing runs.
"""
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import BIN, REPO, SNAKEMAKE, make_workspace

PROFILE = REPO / "profiles" / "slurm"
KINDS = yaml.safe_load((PROFILE / "resources.yaml").read_text())["stage_resources"]
DEFAULTS = yaml.safe_load((PROFILE / "config.yaml").read_text())["default-resources"]

FAKES = {
    "sbatch": 'printf "%s\\n" "$@" > "$FAKE_SLURM_LOG/sbatch.$$"\necho $$',
    "sacct": 'for f in "$FAKE_SLURM_LOG"/sbatch.*; do [ -e "$f" ] && echo "${f##*.}|COMPLETED"; done; exit 0',
    "squeue": 'for f in "$FAKE_SLURM_LOG"/sbatch.*; do [ -e "$f" ] && echo "${f##*.}|COMPLETED"; done; exit 0',
    "sinfo": f'echo PARTITION; echo "{DEFAULTS["slurm_partition"]}*"',
    "scontrol": 'echo "MaxArraySize = 1001"; echo "MinJobAge = 300 sec"',
    "sacctmgr": f'echo "{DEFAULTS["slurm_account"]}"',  # the accounts of the user: the placeholder is valid
}
# The sbatch options that name this run (job name, log file, working directory, the job's own command).
RUN_SPECIFIC = ("--job-name", "--output", "-D", "--wrap")


def options(argv: list[str]) -> dict:
    """sbatch's arguments as {option: value}, True for a flag."""
    out, i = {}, 0
    while i < len(argv):
        arg = argv[i]
        if "=" in arg:
            key, value = arg.split("=", 1)
            out[key] = value
        elif i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            out[arg] = argv[i + 1]
            i += 1
        else:
            out[arg] = True
        i += 1
    return out


def resolved(job: dict) -> dict:
    return {k: v for k, v in job.items() if k not in RUN_SPECIFIC}


def expected(rule: str, kind: str, **flags: str) -> dict:
    """The submission for a rule of this kind: the profile's partition and account, the kind's requests."""
    request = {**DEFAULTS, **KINDS[kind]}
    return {"--parsable": True, "--export": "ALL", "--comment": f"rule_{rule}", "-A": DEFAULTS["slurm_account"],
            "-p": DEFAULTS["slurm_partition"], "-t": str(request["runtime"]), "--mem": str(request["mem_mb"]),
            **flags}


class FakeCluster:
    def __init__(self, root: Path):
        self.ws = make_workspace(root / "ws")
        self.bin, self.log = root / "bin", root / "log"
        self.bin.mkdir()
        for name, body in FAKES.items():
            (self.bin / name).write_text(f"#!/bin/sh\n{body}\n")
            (self.bin / name).chmod(0o755)

    def run(self, args: list[str], **env: str) -> subprocess.CompletedProcess:
        return subprocess.run([SNAKEMAKE, *args], cwd=self.ws, capture_output=True, text=True, timeout=300,
                              env={"PATH": f"{self.bin}:{BIN}:/usr/bin:/bin", "PYTHONPATH": str(self.ws),
                                   "HOME": str(self.ws), "FAKE_SLURM_LOG": str(self.log), **env})

    def submit(self, *targets: str, extra: tuple[str, ...] = (), **env: str) -> dict[str, dict]:
        """Submit the targets' DAG through profiles/slurm: {rule: its sbatch options}."""
        shutil.rmtree(self.log, ignore_errors=True)
        self.log.mkdir()
        # The scheduler re-checks after each max-jobs-per-timespan window: 2 s leaves a submission time to
        # be reported before that check would find nothing left to start.
        out = self.run([*targets, "--profile", "profiles/slurm", "--immediate-submit", "--notemp",
                        "--slurm-init-seconds-before-status-checks", "1", "--max-jobs-per-timespan", "100/2s",
                        *extra], **env)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        jobs = [options(f.read_text().splitlines()) for f in sorted(self.log.glob("sbatch.*"))]
        by_rule = {job["--comment"].removeprefix("rule_"): job for job in jobs}
        assert len(by_rule) == len(jobs), "a rule was submitted twice"
        return by_rule


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> FakeCluster:
    return FakeCluster(tmp_path_factory.mktemp("slurm"))


@pytest.fixture(scope="module")
def submitted(cluster) -> dict[str, dict]:
    """The tiny teacher's chain: prepare (CPU), train (GPU), fuse (CPU, 4 cores), export (CPU, 4 cores)."""
    return cluster.submit("export_teacher")


def test_gpu_rule_submission(submitted, cluster):
    job = submitted["train_teacher"]
    assert resolved(job) == expected("train_teacher", "train", **{
        "--gpus": "1", "--cpus-per-gpu": str(KINDS["train"]["cpus_per_gpu"])})
    # The job itself runs the rule through the plugin's job step, with the same per-kind requests.
    wrap = shlex.split(job["--wrap"])
    assert wrap[wrap.index("--target-jobs") + 1] == "train_teacher:"
    assert wrap[wrap.index("--configfiles") + 1] == str(cluster.ws / "profiles" / "slurm" / "resources.yaml")
    assert job["-D"] == str(cluster.ws)


def test_cpu_rule_submissions(submitted):
    assert set(submitted) == {"prepare_digits", "train_teacher", "fuse_teacher", "export_teacher"}
    assert resolved(submitted["prepare_digits"]) == expected("prepare_digits", "prepare", **{
        "--ntasks": "1", "--cpus-per-task": "1"})
    # Fusing and exporting time inference on all of their cores: the kind asks for a fixed number, not the
    # submit host's.
    for rule, kind in (("fuse_teacher", "fuse"), ("export_teacher", "export")):
        assert resolved(submitted[rule]) == expected(rule, kind, **{
            "--ntasks": "1", "--cpus-per-task": str(KINDS[kind]["cpus_per_task"])})


def test_multi_gpu_training_and_a_rule_override(cluster):
    jobs = cluster.submit("train_teacher", extra=("--set-resources", "train_teacher:runtime=2880"), KDLIB_NPROC="2")
    assert set(jobs) == {"prepare_digits", "train_teacher"}
    train = resolved(jobs["train_teacher"])
    assert (train["--gpus"], train["-t"]) == ("2", "2880")
    assert train == expected("train_teacher", "train", **{
        "--gpus": "2", "--cpus-per-gpu": str(KINDS["train"]["cpus_per_gpu"]), "-t": "2880"})
    assert "--gpus" not in jobs["prepare_digits"]


def test_unknown_stage_kind(cluster, tmp_path):
    profile = tmp_path / "profile"
    shutil.copytree(PROFILE, profile)
    (profile / "resources.yaml").write_text(yaml.safe_dump({"stage_resources": {**KINDS, "trian": {"runtime": 5}}}))
    out = cluster.run(["--profile", str(profile), "-n"])
    assert out.returncode != 0
    assert "error: stage_resources.trian: not a stage kind (known: prepare, teacher_outputs, train, fuse," in out.stderr
    assert out.stderr.count("not a stage kind") == 1 and "Traceback" not in out.stderr
