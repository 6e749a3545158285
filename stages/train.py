"""Train one run (from scratch, or distilled from its teacher) into results/<profile>/runs/<name>/; with --stage, one
stage of a StableKD run into results/<profile>/runs/<name>/stage<C>.pt. With KDLIB_NPROC=N, on N processes (torchrun)."""

from kdlib import warm

warm.delegate()  # first: under `python -m kdlib.warm`, a fork of a process with torch imported runs the job

import sys

from kdlib.cli import require, stage_main
from kdlib.engine import distributed
from kdlib.engine.device import pick_device, pin_training_threads
from kdlib.engine.trainer import rank_batch, train
from kdlib.launch import processes, relaunch_under_torchrun


def main(params, name, stage):
    require(params, "runs", name)
    rank_batch(params, name, processes())
    relaunch_under_torchrun(sys.argv)  # after the checks, so that bad input fails once, not once per process
    device = distributed.start(pick_device())
    pin_training_threads(device)
    try:
        result, main = train(name, params, device, stage), distributed.is_main()
    finally:
        distributed.stop()
    if not main:
        return
    if "stage" in result:
        print(f"{name} stage {result['stage']}: {result['epochs']} epochs, test acc {result['test_acc']:.2f}%")
        return
    print(f"{name}: final test acc {result['final']['test_acc']:.2f}%, "
          f"best {result['best']['test_acc']:.2f}% (epoch {result['best']['epoch']})")


if __name__ == "__main__":
    stage_main(__doc__, main, takes_stage=True)
