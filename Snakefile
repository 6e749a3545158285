# One rule per stage of kdlib.pipeline, the same stages `dvc.yaml` is generated from.
# Another profile: snakemake --config params=configs/cifar10_seed000.yaml
import os
import sys

from kdlib.errors import KDError
from kdlib.pipeline import DEFAULT_PARAMS, stages

PARAMS = config.get("params", DEFAULT_PARAMS)
try:
    STAGES = stages(PARAMS)
except KDError as e:
    sys.exit(f"error: {e}")


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
            stage.outputs,
        params:
            # Snakemake re-runs a job whose params changed: these are the resolved values of
            # the run's params keys and those of every run upstream of it.
            values=stage.values,
            # Through params: a shell directive inside a loop would see only the last stage.
            cmd=stage.cmd(PARAMS),
        # Snakemake lowers a job's threads to --cores; workflow.cores would break `snakemake -n` without it.
        threads: (os.cpu_count() or 1) if stage.all_cores else 1
        resources:
            gpu=1 if stage.gpu else 0,
        shell:
            "{params.cmd}"
