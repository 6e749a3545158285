"""StableKD (seed 003): teacher and student split into aligned blocks that learn side by side, then merged.

The atomic blocks of a StagedNet are its stages and, last, its head. Decomposition groups them into k blocks
(the head alone, the stages split evenly into k - 1 runs); while decomposed, each student block starts from the
teacher's output of the block before it, so no gradient crosses a block boundary. Recomposition R merges
neighbours pairwise, (1, 2), (3, 4), ..., so after c recompositions stage c trains ceil(k / 2^c) blocks.

The blocks' loss terms, the student in the teacher's widths and the folding of its projectors are shared with
kd_mse (kdlib.distill.blockwise).
"""
from __future__ import annotations

from kdlib.distill.blockwise import Blockwise
from kdlib.errors import KDError


def initial_groups(num_stages: int, k: int) -> list[list[int]]:
    """k blocks over atomic blocks 0..num_stages (the last is the head). Earlier groups take the remainder."""
    if not 1 <= k <= num_stages + 1:
        raise KDError(f"StableKD blocks must be between 1 and {num_stages + 1} (the {num_stages} stages and the "
                      f"head) for this model (got {k})")
    if k == 1:
        return [list(range(num_stages + 1))]
    base, extra = divmod(num_stages, k - 1)
    groups, start = [], 0
    for i in range(k - 1):
        size = base + (1 if i < extra else 0)
        groups.append(list(range(start, start + size)))
        start += size
    return groups + [[num_stages]]


def recompose(groups: list[list[int]]) -> list[list[int]]:
    """R(D): merge blocks i and i + 1 for every odd i (1-based); an odd last block stays alone."""
    return [sum(groups[i:i + 2], []) for i in range(0, len(groups), 2)]


def groups_at(num_stages: int, k: int, stage: int) -> list[list[int]]:
    """The blocks StableKD stage `stage` trains: the initial k, recomposed `stage` times."""
    groups = initial_groups(num_stages, k)
    for _ in range(stage):
        groups = recompose(groups)
    return groups


class Method(Blockwise):
    decomposed = True

    def blocks_at(self, num_stages, stage):
        return groups_at(num_stages, self.spec.blocks or num_stages + 1, stage)
