# One rule per stage of kdlib.pipeline, the same stages `dvc.yaml` is generated from (DVC has one more, `recipes`).
# Another profile: snakemake --config params=configs/cifar10_seed000.yaml (its files: data/<profile>/, results/<profile>/)
import os
import sys

from kdlib.config import load_params
from kdlib.errors import KDError
from kdlib.launch import gpu_host, processes
from kdlib.pipeline import DEFAULT_PARAMS, STAGE_KINDS, downstream, stages, write_recipes

# --config params=123 reads as a number; ./configs/x.yaml is configs/x.yaml, in the commands DVC runs too
PARAMS = os.path.normpath(str(config.get("params", DEFAULT_PARAMS)))
# Cluster requests per stage kind (runtime in minutes, mem_mb, ...), from a cluster profile's configfile
# (profiles/slurm/resources.yaml); a local run needs none.
REQUESTS = config.get("stage_resources") or {}
try:
    unknown = sorted(set(REQUESTS) - set(STAGE_KINDS))
    if unknown:
        raise KDError(f"stage_resources.{unknown[0]}: not a stage kind (known: {', '.join(STAGE_KINDS)})")
    # KDLIB_NPROC=N: every training job runs N processes under torchrun, one GPU each.
    TRAIN_GPUS = processes()
    # On a GPU host, or where a cluster profile sets gpu_jobs (profiles/slurm/resources.yaml), a training job gets
    # its GPU(s) and every core (data loading). Elsewhere every job gets one core and --cores of them run side by
    # side: CPU training runs on one thread anyway (kdlib.engine.device.pin_training_threads).
    GPU_JOBS = config.get("gpu_jobs", gpu_host())
    if not isinstance(GPU_JOBS, bool):
        raise KDError(f"gpu_jobs: expected true or false, got {GPU_JOBS!r}")
    PROFILE = load_params(PARAMS)
    STAGES = stages(PARAMS, PROFILE)
except KDError as e:
    sys.exit(f"error: {e}")


# Before a run (not a dry run): each stage's recipe file as DVC's recipes stage writes it, so that `dvc commit`
# afterwards records the recipes this run followed.
onstart:
    write_recipes(STAGES, PROFILE.layout)  # the stages this run plans, not computed again


# Snakemake starts the most awaited jobs first: teachers (and their fusing) before the runs nothing waits for.
WAITING = {name: len(readers) for name, readers in downstream(STAGES).items()}


# `snakemake --report report.html`: the tables stage's tables and figures in one self-contained page, with
# report/workflow.rst as its front page (which prints every table) and a caption per kind of file.
report: "report/workflow.rst"


def reported(path):
    """A tables-stage output flagged for the HTML report, under Figures, Tables or Report, a subcategory per seed,
    labelled by its name ("seed 000, table 1"). The flag changes no job, only what --report embeds."""
    folder, stem = os.path.basename(os.path.dirname(path)), os.path.splitext(os.path.basename(path))[0]
    kind = {"figures": "figure", "tables": "table"}.get(folder, "document")
    seed, _, rest = stem.partition("_") if stem.startswith("seed") and "_" in stem else ("", "", stem)
    group = f"seed {seed[4:]}" if seed else "all runs"
    word = rest.rstrip("0123456789")  # table1 -> table 1
    rest = f"{word} {rest[len(word):]}" if word and word != rest else rest
    name = f"{group}, {rest}" if seed else stem
    category = {"figure": "Figures", "table": "Tables"}.get(kind, "Report")
    return report(path, caption=f"report/{kind}.rst", category=category, subcategory=group,
                  labels={kind: name.replace("_", " ")})


rule all:
    input:
        [path for s in STAGES if s.name == "tables" for path in s.outputs],


for stage in STAGES:

    rule:
        name:
            stage.name
        input:
            stage.deps,
        output:
            [reported(path) if path in stage.reports else path for path in stage.outputs],
        params:
            # Snakemake re-runs a job whose params changed: these are the resolved values of
            # the run's params keys and those of every run upstream of it.
            values=stage.values,
            # Through params: a shell directive inside a loop would see only the last stage.
            cmd=stage.cmd(PARAMS),
        # Snakemake lowers a job's threads to --cores; workflow.cores would break `snakemake -n` without it.
        threads: (os.cpu_count() or 1) if stage.all_cores and GPU_JOBS else 1
        priority: WAITING[stage.name]
        resources:
            # Only where a GPU is wanted: executors (Kubernetes) treat any `gpu` key as a GPU job.
            **({"gpu": TRAIN_GPUS if stage.kind == "train" else 1} if stage.gpu and GPU_JOBS else {}),
            **REQUESTS.get(stage.kind, {}),
        shell:
            "{params.cmd}"
