"""A run's training stream: the augmented, shuffled and mixed batches it sees, epoch by epoch.

The stream depends on the run's dataset, train_fraction, seed, batch size, augmentation and mixing, and on nothing
the model does: it draws from a random state of its own, so a student whose forward pass draws random numbers
(dropout, stochastic depth, ST's directions) sees the batches any other student with that recipe sees. That is
what lets kdlib.distill.teacher_outputs run a teacher over the stream once and replay its logits.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch

from kdlib.config import Params
from kdlib.data.mixing import batch_mixer
from kdlib.data.prepared import DatasetFiles, class_fraction, load_prepared, train_loader
from kdlib.seeding import epoch_seed

# The model's own draws come from another seed than the stream's (the same one would correlate, say, dropout masks
# with crop offsets).
MODEL_SEED_OFFSET = 1 << 62


def run_files(params: Params, name: str) -> DatasetFiles:
    """The run's prepared dataset: its train_fraction of the training split, its test_fraction of the test split."""
    run = params.runs[name]
    files = load_prepared(params.layout.dataset_dir(run.dataset))
    if run.train_fraction < 1:
        files.train = class_fraction(files.train, run.train_fraction, run.seed)
    if run.evaluation.test_fraction < 1:  # one subset for every run, so that their histories compare
        files.test = class_fraction(files.test, run.evaluation.test_fraction, 0)
    return files


class RandomState:
    """A CPU random stream of its own: what runs inside `with` draws from it and leaves the global stream as it was."""

    def __init__(self, seed: int):
        self.state = torch.Generator().manual_seed(seed).get_state()

    def __enter__(self):
        self.outside = torch.get_rng_state()
        torch.set_rng_state(self.state)

    def __exit__(self, *exc):
        self.state = torch.get_rng_state()
        torch.set_rng_state(self.outside)


class TrainingStream:
    """Rank `rank`'s batches of `batch_size` images (its share of the run's batch), on `device`."""

    def __init__(self, files: DatasetFiles, run, batch_size: int, device: torch.device, rank: int = 0,
                 ranks: int = 1):
        self.files, self.run, self.batch_size, self.device = files, run, batch_size, device
        self.rank, self.ranks = rank, ranks
        self.mixer = batch_mixer(run.mix, files.num_classes) if run.mix is not None else None

    def __len__(self) -> int:
        """Batches per epoch."""
        return -(-self.images // self.batch_size)

    @property
    def images(self) -> int:
        """Images per epoch (this rank's)."""
        return -(-len(self.files.train.labels) // self.ranks)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(images, labels) per batch; labels are class distributions where the run mixes batches. Every epoch
        draws from its own seed (a resumed run sees the batches an uninterrupted one would), every rank from its
        own stream; the global random state is seeded for the model's draws."""
        seed = epoch_seed(self.run.seed, epoch)
        stream = RandomState(seed + (self.rank << 32))
        torch.manual_seed(seed + (self.rank << 32) + MODEL_SEED_OFFSET)
        loader = train_loader(self.files, self.run.augment, self.batch_size, seed, self.rank, self.ranks)
        with stream:
            batches = iter(loader)
        while True:
            with stream:
                try:
                    x, y = next(batches)
                except StopIteration:
                    return
                x, y = x.to(self.device), y.to(self.device)
                if self.mixer is not None:
                    x, y = self.mixer(x, y)  # y becomes class distributions
            yield x, y
