"""Run a teacher once over a training stream and store its logits: data/<profile>/teacher_outputs/<stream>/.

The runs that replay them (kdlib.distill.teacher_outputs) then train at the student's cost alone. Refused before the
teacher runs if the files would exceed teacher_outputs.max_mb or the free disk.
"""

from kdlib import warm

warm.delegate()  # first: under `python -m kdlib.warm`, a fork of a process with torch imported runs the job

import time

from kdlib.cli import stage_main
from kdlib.distill.teacher_outputs import write
from kdlib.engine.device import pick_device, pin_training_threads


def main(params, stream):
    device = pick_device()
    pin_training_threads(device)  # the threads the students train on: their live-teacher logits would be these
    started = time.perf_counter()
    record = write(params, stream, device)
    epochs, images, width = record["shape"]
    print(f"{stream}: teacher {record['teacher']} over {epochs} epochs x {images} images in "
          f"{time.perf_counter() - started:.1f} s; {record['mb']:g} MB ({width} {record['dtype']} values per image), "
          f"replayed by {', '.join(record['runs'])}")


if __name__ == "__main__":
    stage_main(__doc__, main)
