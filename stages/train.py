"""Train one run (from scratch, or distilled from its teacher) into results/runs/<name>/."""
from kdlib.cli import require, stage_main
from kdlib.engine.device import pick_device
from kdlib.engine.trainer import train


def main(params, name):
    require(params, "runs", name)
    metrics = train(name, params, pick_device())
    print(f"{name}: final test acc {metrics['final']['test_acc']:.2f}%, "
          f"best {metrics['best']['test_acc']:.2f}% (epoch {metrics['best']['epoch']})")


if __name__ == "__main__":
    stage_main(__doc__, main)
