"""Compile every run's metrics into results/<profile>/: tables/*.md, figures/*.png and report.md."""

from kdlib import warm

warm.delegate()  # first: under `python -m kdlib.warm`, a fork of a process with torch imported runs the job

from kdlib.cli import stage_main
from kdlib.report.studies import report_file
from kdlib.report.tables import write_report


def main(params, _):
    write_report(params)
    print(f"wrote {report_file(params)}")


if __name__ == "__main__":
    stage_main(__doc__, main, takes_name=False)
