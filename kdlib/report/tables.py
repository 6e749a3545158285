"""The tables stage: every study of kdlib.report.studies that applies to params writes its tables and figures and
returns its section of report.md; report.md is those sections in the order of STUDIES."""
from __future__ import annotations

from importlib import import_module

from kdlib.atomic import atomic_write_text
from kdlib.config import Params
from kdlib.report.results import Results
from kdlib.report.studies import ENTRY, Study, applicable, report_file


def writer(study: Study):
    return getattr(import_module(study.module), ENTRY)


def write_report(params: Params) -> None:
    res = Results(params)
    report = []
    for study in applicable(params):
        report += writer(study)(params, res, study.outputs(params))
    atomic_write_text(report_file(params), "\n".join(report))
