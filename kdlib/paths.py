"""Where each stage reads and writes, relative to the project root (the working directory)."""
from pathlib import Path

DATA = Path("data")
RESULTS = Path("results")
RECIPE_DIR = RESULTS / "recipes"  # each stage's resolved recipe, which DVC compares (kdlib.pipeline.write_recipes)


def dataset_dir(name: str) -> Path:
    return DATA / name


def run_dir(name: str) -> Path:
    return RESULTS / "runs" / name


def inference_checkpoint(name: str, block_type: str) -> Path:
    """The checkpoint evaluation and students use: an ACB run's fused deploy.pt, else its model.pt."""
    return run_dir(name) / ("deploy.pt" if block_type == "acb" else "model.pt")


def dense_data_dir(name: str) -> Path:
    """A dense experiment's prepared data (seed 002, Task 2)."""
    return DATA / "dense" / name


def dense_run_dir(name: str, role: str) -> Path:
    return RESULTS / "dense" / name / role



def recipe_file(stage: str) -> Path:
    return RECIPE_DIR / f"{stage}.json"
