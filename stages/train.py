"""Train one run (from scratch, or distilled from its teacher) into results/runs/<name>/; with --stage, one
stage of a StableKD run into results/runs/<name>/stage<C>.pt."""
from kdlib.cli import require, stage_main
from kdlib.engine.device import pick_device
from kdlib.engine.trainer import train


def main(params, name, stage):
    require(params, "runs", name)
    result = train(name, params, pick_device(), stage)
    if "stage" in result:
        print(f"{name} stage {result['stage']}: {result['epochs']} epochs, test acc {result['test_acc']:.2f}%")
        return
    print(f"{name}: final test acc {result['final']['test_acc']:.2f}%, "
          f"best {result['best']['test_acc']:.2f}% (epoch {result['best']['epoch']})")


if __name__ == "__main__":
    stage_main(__doc__, main, takes_stage=True)
