"""Train one role of a dense experiment (teacher, scratch or kd) into results/<profile>/dense/<name>/<role>/."""

from kdlib import warm

warm.delegate()  # first: under `python -m kdlib.warm`, a fork of a process with torch imported runs the job

from kdlib.cli import require, stage_main
from kdlib.config import DENSE_ROLES
from kdlib.dense.train import train
from kdlib.engine.device import pick_device, pin_training_threads


def main(params, name, role):
    require(params, "dense", name)
    device = pick_device()
    pin_training_threads(device)
    metrics = train(params, name, role, device)
    print(f"dense {name} {role}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics["final"].items()))


if __name__ == "__main__":
    stage_main(__doc__, main, roles=DENSE_ROLES)
