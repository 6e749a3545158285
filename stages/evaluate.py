"""Evaluate a finished run's inference checkpoint (deploy.pt for ACB runs) on its test split into eval.json."""
import json

from kdlib.cli import require, stage_main
from kdlib.data.prepared import load_prepared, test_loader
from kdlib.atomic import atomic_write_text
from kdlib.engine.checkpoint import inference_model
from kdlib.engine.device import pick_device
from kdlib.engine.evaluate import evaluate, top3_samples
from kdlib.paths import dataset_dir, inference_checkpoint, run_dir


def main(params, name):
    require(params, "runs", name)
    run = params.runs[name]
    files = load_prepared(dataset_dir(run.dataset))
    device = pick_device()
    checkpoint = inference_checkpoint(name, run.block_type)
    model = inference_model(params, name, files.num_classes)
    result = evaluate(model.to(device), test_loader(files, run.batch_size), device)
    hits = result["predictions"] == result["labels"]
    per_class = {c: 100.0 * hits[result["labels"] == i].float().mean().item() for i, c in enumerate(files.meta["classes"])}
    atomic_write_text(run_dir(name) / "eval.json", json.dumps(
        {"run": name, "checkpoint": checkpoint.name, "test_acc": result["acc"], "test_loss": result["loss"], "num_test": len(hits),
         "per_class_acc": per_class, "top3": top3_samples(result["logits"], result["labels"])}, indent=2))
    print(f"{name}: test acc {result['acc']:.2f}% on {len(hits)} images ({checkpoint})")


if __name__ == "__main__":
    stage_main(__doc__, main)
