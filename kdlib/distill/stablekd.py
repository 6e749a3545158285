"""StableKD (seed 003): teacher and student split into aligned blocks that learn side by side, then merged.

The atomic blocks of a StagedNet are its stages and, last, its head. Decomposition groups them into k blocks
(the head alone, the stages split evenly into k - 1 runs); while decomposed, each student block starts from the
teacher's output of the block before it, so no gradient crosses a block boundary. Recomposition R merges
neighbours pairwise, (1, 2), (3, 4), ..., so after c recompositions stage c trains ceil(k / 2^c) blocks.

Where the student's width at a boundary differs from the teacher's, the student carries two 1x1 projectors
there: `leave` maps its block output to the teacher's width (the MSE target), `enter` maps the teacher's output
into the next student block. Recomposed, the path is enter(leave(x)), one linear channel map, which
`fold_projectors` absorbs into the next block's first layers so the deployed student is the plain network.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from kdlib.errors import KDError
from kdlib.models.base import Residual, StagedNet


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


class Projected(nn.Module):
    """A student block seen in the teacher's widths: `enter` before it, `leave` after it (either may be None)."""

    def __init__(self, block: nn.Module, enter: nn.Conv2d | None, leave: nn.Conv2d | None):
        super().__init__()
        self.block, self.enter, self.leave = block, enter, leave

    def forward(self, x):
        x = self.block(x if self.enter is None else self.enter(x))
        return x if self.leave is None else self.leave(x)


def _entry_layers(module: nn.Module) -> list[nn.Module] | None:
    """The linear layers that read a block's input directly, or None if something non-linear reads it first.
    Average pooling and flattening commute with a channel map, so they are looked through."""
    if isinstance(module, nn.Conv2d):
        return [module] if module.groups == 1 else None
    if isinstance(module, nn.Linear):
        return [module]
    if isinstance(module, nn.Sequential):
        for layer in module:
            if not isinstance(layer, (nn.AdaptiveAvgPool2d, nn.Flatten)):
                return _entry_layers(layer)
        return None
    if isinstance(module, Residual) and not isinstance(module.shortcut, nn.Identity):
        body, shortcut = _entry_layers(module.body), _entry_layers(module.shortcut)
        return body + shortcut if body is not None and shortcut is not None else None
    return None


def student_in_teacher_widths(student: StagedNet, teacher: StagedNet, input_shape: tuple[int, int, int]) -> StagedNet:
    """The student itself when every stage output matches the teacher's shape; else the student (sharing its
    modules) with 1x1 projectors at each boundary where only the channel counts differ."""
    s_shapes, t_shapes = student.stage_shapes(input_shape), teacher.stage_shapes(input_shape)
    if len(s_shapes) != len(t_shapes):
        raise KDError(f"blockwise distillation pairs stage with stage: the student has {len(s_shapes)} stages, the "
                      f"teacher {len(t_shapes)}")
    blocks = [*student.stages, student.head]
    enter, leave = [None] * len(blocks), [None] * len(blocks)
    for i, (s, t) in enumerate(zip(s_shapes, t_shapes)):
        if s == t:
            continue
        if s[1:] != t[1:]:
            raise KDError(f"blockwise distillation needs equal feature sizes after every stage; after stage {i + 1} "
                          f"the student's is {s[1]}x{s[2]}, the teacher's {t[1]}x{t[2]}")
        if _entry_layers(blocks[i + 1]) is None:
            raise KDError(f"after stage {i + 1} the student has {s[0]} channels and the teacher {t[0]}, and the "
                          f"student's next block cannot absorb a 1x1 projector (it does not start with a linear "
                          "layer); use a teacher of the same widths")
        leave[i] = nn.Conv2d(s[0], t[0], 1, bias=False)
        enter[i + 1] = nn.Conv2d(t[0], s[0], 1, bias=False)
    if not any(leave):
        return student
    projected = [Projected(b, e, l) for b, e, l in zip(blocks, enter, leave)]
    return StagedNet(projected[:-1], projected[-1])


@torch.no_grad()
def fold_projectors(net: StagedNet) -> StagedNet:
    """The plain student computing what `net` computes: each enter(leave(x)) folded into the next block."""
    if not isinstance(net.head, Projected):
        return net
    blocks = [copy.deepcopy(b) for b in [*net.stages, net.head]]
    for i in range(len(blocks) - 1):
        if blocks[i].leave is None:
            continue
        channel_map = blocks[i + 1].enter.weight[:, :, 0, 0] @ blocks[i].leave.weight[:, :, 0, 0]
        for layer in _entry_layers(blocks[i + 1].block):
            # A conv's weight is (out, in, kh, kw); a linear layer after flattening reads (in, positions).
            weight = layer.weight.view(layer.weight.shape[0], channel_map.shape[0], -1)
            layer.weight.copy_(torch.einsum("ojp,ji->oip", weight, channel_map).reshape(layer.weight.shape))
    plain = [b.block for b in blocks]
    return StagedNet(plain[:-1], plain[-1])
