"""Where each stage reads and writes, relative to the project root (the working directory).

Every profile (params file) has its own folders, data/<profile>/ and results/<profile>/, named by its `profile`
key, so that several profiles share a checkout and neither tool's run of one touches another's files."""
from dataclasses import dataclass
from pathlib import Path

DATA = Path("data")
DATA_RAW = DATA / "raw"  # downloaded datasets (the CIFAR archives), shared by every profile
RESULTS = Path("results")


@dataclass(frozen=True)
class Layout:
    profile: str

    @property
    def data(self) -> Path:
        return DATA / self.profile

    @property
    def results(self) -> Path:
        return RESULTS / self.profile

    @property
    def recipes(self) -> Path:
        """Each stage's resolved recipe, which DVC compares (kdlib.pipeline.write_recipes)."""
        return self.results / "recipes"

    def recipe_file(self, stage: str) -> Path:
        return self.recipes / f"{stage}.json"

    def dataset_dir(self, name: str) -> Path:
        return self.data / name

    def run_dir(self, name: str) -> Path:
        return self.results / "runs" / name

    def inference_checkpoint(self, name: str, block_type: str) -> Path:
        """The checkpoint evaluation and students use: an ACB run's fused deploy.pt, else its model.pt."""
        return self.run_dir(name) / ("deploy.pt" if block_type == "acb" else "model.pt")

    def teacher_outputs_dir(self, stream: str) -> Path:
        """A teacher's logits over one training stream (kdlib.distill.teacher_outputs)."""
        return self.data / "teacher_outputs" / stream

    def teacher_outputs_files(self, stream: str) -> list[Path]:
        """The logits, each batch's pixel sum, and the record that vouches for them."""
        return [self.teacher_outputs_dir(stream) / f for f in ("logits.npy", "batches.npy", "stream.json")]

    def dense_data_dir(self, name: str) -> Path:
        """A dense experiment's prepared data (seed 002, Task 2)."""
        return self.data / "dense" / name

    def dense_run_dir(self, name: str, role: str) -> Path:
        return self.results / "dense" / name / role
