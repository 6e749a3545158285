"""Blockwise distillation (methods kd_mse and stablekd): teacher and student paired atomic block by atomic block.

The atomic blocks of a StagedNet are its stages and, last, its head. Seed 003's Eq. 8 sums CE, lambda KL and the
MSE of every trained block's output against the teacher's output of the same atomic block.

Where the student's width at a boundary differs from the teacher's, the student carries two 1x1 projectors
there: `leave` maps its block output to the teacher's width (the MSE target), `enter` maps the teacher's output
into the next student block. Recomposed, the path is enter(leave(x)), one linear channel map, which
`fold_projectors` absorbs into the next block's first layers so the deployed student is the plain network.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from kdlib.distill.kd import kd_kl
from kdlib.distill.method import Method
from kdlib.errors import KDError
from kdlib.models.base import Residual, StagedNet


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


class Blockwise(Method):
    """Trains the student in the teacher's widths, block group by block group (`groups`, from `blocks_at`)."""
    decomposed = False  # stablekd: each group starts from the teacher's output of the block before it

    def __init__(self, spec, student, teacher, input_shape, stage=0):
        super().__init__(spec, student, teacher, input_shape, stage)
        self.student = student_in_teacher_widths(student, teacher, input_shape)
        self.groups = self.blocks_at(len(self.student.stages), stage)

    def blocks_at(self, num_stages: int, stage: int) -> list[list[int]]:
        """The groups of atomic blocks (0..num_stages, the last the head) that training stage `stage` trains."""
        raise NotImplementedError

    def deployable(self, student):
        """The student with the projectors of blockwise training folded away."""
        return fold_projectors(student)

    def terms(self, d, x, y, epoch):
        """Seed 003's Eq. 8, CE + lambda KL + the MSE of every block but the last against the teacher's output
        of the same atomic block (term mse_b<i>, i its last atomic block). stablekd feeds each block the
        teacher's output of the block before it; kd_mse chains the student's own blocks end to end."""
        with torch.no_grad():
            t_logits, t_features = d.teacher.forward_features(x)
        blocks = [*d.student.stages, d.student.head]
        teacher_inputs, teacher_outputs = [x, *t_features], [*t_features, t_logits]
        losses, h = {}, x
        for group in d.groups:
            if self.decomposed:
                h = teacher_inputs[group[0]]
            for i in group:
                h = blocks[i](h)
            if group[-1] < len(blocks) - 1:
                losses[f"mse_b{group[-1]}"] = F.mse_loss(h, teacher_outputs[group[-1]])
        kl = self.spec.kl_weight * kd_kl(h, t_logits, self.spec.temperature)
        return h, {"ce": d.hard_loss(h, y), "kd": kl, **losses}
