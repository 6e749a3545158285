"""Per-epoch seeds, shared by the classification and the dense trainers."""


def epoch_seed(seed: int, epoch: int) -> int:
    # Every epoch draws its shuffling and augmentation from its own seed, so a resumed run
    # replays exactly the batches an uninterrupted run would have seen.
    return seed * 1_000_003 + epoch
