"""Fuse an ACB run's branches into plain convs: results/<profile>/runs/<name>/deploy.pt and fuse.json.

Fails, writing nothing, if the fused model predicts differently from the unfused one on any test image.
"""

from kdlib import warm

warm.delegate()  # first: under `python -m kdlib.warm`, a fork of a process with torch imported runs the job

from kdlib.cli import require, stage_main
from kdlib.engine.device import pick_device
from kdlib.reparam.deploy import fuse_run


def main(params, name):
    require(params, "runs", name)
    r = fuse_run(name, params, pick_device())
    ms = r["latency_ms_per_batch"]
    print(f"{name}: fused = unfused on all {r['num_test']} test images (top-1 {r['fused_test_acc']:.2f}%, "
          f"max |logit diff| {r['max_abs_logit_diff']:.2g}); ms per batch of {ms['batch_size']}: "
          f"unfused {ms['unfused']:.2f}, fused {ms['fused']:.2f}, plain {ms['plain']:.2f}")


if __name__ == "__main__":
    stage_main(__doc__, main)
