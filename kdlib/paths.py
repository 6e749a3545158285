"""Where each stage reads and writes, relative to the project root (the working directory)."""
from pathlib import Path

DATA = Path("data")
RESULTS = Path("results")


def dataset_dir(name: str) -> Path:
    return DATA / name


def run_dir(name: str) -> Path:
    return RESULTS / "runs" / name
