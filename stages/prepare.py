"""Build one dataset from its source into data/<profile>/<name>/ (train.pt, test.pt, meta.json)."""

from kdlib import warm

warm.delegate()  # first: under `python -m kdlib.warm`, a fork of a process with torch imported runs the job

from kdlib.cli import require, stage_main
from kdlib.data.prepared import save_prepared
from kdlib.data.sources import build


def main(params, name):
    require(params, "datasets", name)
    prepared = build(params.datasets[name])
    save_prepared(prepared, params.layout.dataset_dir(name))
    print(f"{name}: {len(prepared.train.labels)} train / {len(prepared.test.labels)} test images, "
          f"{len(prepared.classes)} classes -> {params.layout.dataset_dir(name)}")


if __name__ == "__main__":
    stage_main(__doc__, main)
