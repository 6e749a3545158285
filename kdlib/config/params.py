"""The whole params file: datasets, runs, chains, report, export and dense experiments."""
from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

from pydantic import Field, PrivateAttr

from kdlib.config.dense import EdgeExperiment, SRExperiment
from kdlib.config.provenance import Source
from kdlib.config.schema import DatasetSpec, Export, Report, Run, Strict, TeacherOutputs
from kdlib.paths import Layout

DEFAULT_PARAMS = "params.yaml"  # the params file stage commands leave unnamed


class Params(Strict):
    # the profile's name: its folders data/<profile>/ and results/<profile>/ (default: the params file's name
    # without .yaml), shown in the report
    profile: str
    description: str = ""  # what it runs, shown in the report
    datasets: dict[str, DatasetSpec]  # name -> where its images come from
    runs: dict[str, Run]  # after validation: every run to train, one per seed, with chain teachers filled in
    # chain name -> [teacher, gen 2, gen 3, ...]: each generation distils from the one before it (or from an
    # earlier member it names as teacher), and each student gets a scratch-trained baseline <student>_scratch.
    chains: dict[str, Annotated[list[str], Field(min_length=2)]] = {}
    report: Report = Report()
    export: Export = Export()
    teacher_outputs: TeacherOutputs = TeacherOutputs()  # how cached teacher logits are stored (runs' teacher_cache)
    dense: dict[str, Annotated[SRExperiment | EdgeExperiment, Field(discriminator="task")]] = {}
    _written: dict[str, Run] = PrivateAttr(default_factory=dict)
    _replicas: dict[str, dict[int, str]] = PrivateAttr(default_factory=dict)
    _sources: dict[str, Source] = PrivateAttr(default_factory=dict)
    _file: str = PrivateAttr(default=DEFAULT_PARAMS)

    @property
    def layout(self) -> Layout:
        """Where this profile's stages read and write."""
        return Layout(self.profile)

    @property
    def written(self) -> dict[str, Run]:
        """The runs as params.yaml gives them (plus chain baselines), before one-per-seed expansion;
        a teacher here names a written run."""
        return self._written

    @property
    def replicas(self) -> dict[str, dict[int, str]]:
        """Written run -> {seed: the run trained with that seed}."""
        return self._replicas

    @property
    def sources(self) -> dict[str, Source]:
        """Run -> where the params file defines it."""
        return self._sources

    def command(self, script: str, *args: str) -> str:
        """The command line that runs a stage script with this params file, for messages that say what to rerun."""
        return stage_command(script, args, self._file)


def is_default(params_file: str) -> bool:
    """Whether `params_file` names the project's params.yaml, however the path is spelled."""
    return Path(params_file).resolve() == Path(DEFAULT_PARAMS).resolve()


def stage_command(script: str, args, params_file: str) -> str:
    """`python <script> <args> [--params <file>]` with every argument quoted: Snakemake and DVC run stage commands
    through a shell, and the params path is the user's."""
    return shlex.join(["python", script, *args, *([] if is_default(params_file) else ["--params", params_file])])
