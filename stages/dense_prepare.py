"""Prepare one dense experiment's data into data/<profile>/dense/<name>/ (train.pt, test.pt, meta.json)."""

from kdlib import warm

warm.delegate()  # first: under `python -m kdlib.warm`, a fork of a process with torch imported runs the job

from kdlib.cli import require, stage_main
from kdlib.dense.data import prepare
from kdlib.dense.checks import check


def main(params, name):
    require(params, "dense", name)
    check(name, params.dense[name])
    meta = prepare(name, params.dense[name], params.layout.dense_data_dir(name))
    print(f"dense {name}: {meta['description']} -> {params.layout.dense_data_dir(name)}")


if __name__ == "__main__":
    stage_main(__doc__, main)
