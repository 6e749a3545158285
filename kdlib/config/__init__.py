"""Load and validate params.yaml before any work starts.

Every problem becomes one KDError that names the offending key, e.g.
`params.yaml: runs.student.distill.alpha: must be between 0 and 1 (got 1.5)`.

The package, by concern:
  schema      what the runs, datasets, report and export keys may hold (pydantic models, literal defaults)
  dense       the same for seed 002's dense experiments
  params      the whole params file (Params)
  load        reading YAML, merging defaults, chains, one run per seed, scratch baselines, error messages
  checks      cross-checks over the whole file (names, report roles, stage pairing, teacher cycles)
  provenance  which `runs` entry a run comes from and which of its keys it ignores (Source)
  lineage     how runs relate through their teachers (ancestors, scratch baselines)
  suggest     'did you mean ...?' for misspelt names
Every name other code imports from kdlib.config is re-exported here.
"""
from kdlib.config.dense import (DENSE_ROLES, DENSE_STUDENTS, ROLE_FIELDS, TASKS, DenseExperiment, DenseTraining, EdgeData,
                                EdgeDistill, EdgeExperiment, SRData, SRDistill, SRExperiment, SRNet, UNet)
from kdlib.config.lineage import ancestors, scratch_baseline
from kdlib.config.load import RUN_NAME, load_params, validate
from kdlib.config.params import Params
from kdlib.config.provenance import Source, sets
from kdlib.config.streams import STREAM_KEYS, stream_name, stream_recipe, streams
from kdlib.config.schema import (Augment, ColorJitter, DatasetSpec, Distill, Export, Mix, Optimizer, RandomErasing,
                                 Report, Run, Schedule, Seed001Report, Seed002Report, Seed003Report, Strict,
                                 TeacherOutputs)

__all__ = ["DENSE_ROLES", "DENSE_STUDENTS", "ROLE_FIELDS", "RUN_NAME", "STREAM_KEYS", "TASKS", "Augment", "ColorJitter", "DatasetSpec",
           "DenseExperiment", "DenseTraining", "Distill", "EdgeData", "EdgeDistill", "EdgeExperiment", "Export", "Mix",
           "Optimizer", "Params", "RandomErasing", "Report", "Run", "SRData", "SRDistill", "SRExperiment", "SRNet",
           "Schedule", "Seed001Report", "Seed002Report", "Seed003Report", "Source", "Strict", "TeacherOutputs", "UNet",
           "ancestors", "load_params", "scratch_baseline", "sets", "stream_name", "stream_recipe", "streams",
           "validate"]
