"""What every KD method module provides: a class `Method`, found through its row of kdlib.distill.methods.

`Method(spec, student, teacher, input_shape, stage)` builds what the method trains beside the student, in the
order that fixes the random initialisation: `student` (the student as trained: blockwise methods see it in the
teacher's widths), `projector` (a module trained with the student and never deployed, or None) and `groups`
(blockwise methods: the blocks this stage trains). The Distiller registers projector and student as its own
submodules, so checkpoints do not depend on the method's class, and then asks the method for its loss terms:
`terms(distiller, x, y, epoch) -> (student logits, {term name: loss})`, which reads the networks, the hard loss
and alpha from the Distiller.
"""
from __future__ import annotations

import importlib

import torch
from torch import nn

from kdlib.distill.methods import METHODS
from kdlib.errors import KDError


class Method:
    def __init__(self, spec, student: nn.Module, teacher: nn.Module, input_shape: tuple[int, int, int],
                 stage: int = 0):
        self.spec = spec
        self.student = student
        self.projector: nn.Module | None = None
        self.groups: list[list[int]] | None = None

    def deployable(self, student: nn.Module) -> nn.Module:
        """The trained student as it is deployed."""
        return student

    def terms(self, d, x: torch.Tensor, y: torch.Tensor, epoch: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError


class AlphaWeighted(Method):
    """(1 - alpha) CE + alpha KD, alpha per epoch from distill.schedule (rows with uses_alpha). A method says what
    the teacher gives (`teacher_target`), what of the student's it compares (`student_output`) and how (`kd`)."""

    def teacher_target(self, teacher: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return teacher(x)

    def student_output(self, student: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, what `kd` compares with the teacher's target)."""
        logits = student(x)
        return logits, logits

    def kd(self, d, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def terms(self, d, x, y, epoch):
        alpha = d.alpha(epoch)
        target = None
        if alpha > 0:  # at alpha = 0 (labels only) the teacher's forward pass would be wasted
            # The teacher runs first, before the student's activations for backward fill the memory.
            with torch.no_grad():
                target = self.teacher_target(d.teacher, x)
        logits, output = self.student_output(d.student, x)
        ce = d.hard_loss(logits, y)
        if target is None:
            return logits, {"ce": ce, "kd": torch.zeros((), device=ce.device)}
        kd = self.kd(d, output, target)
        return logits, {"ce": (1 - alpha) * ce, "kd": alpha * kd}


class AddedTerms(Method):
    """Full cross-entropy plus the method's terms, computed from both networks' logits and stage features."""

    def added(self, d, logits, features, t_logits, t_features, y, epoch) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def terms(self, d, x, y, epoch):
        with torch.no_grad():
            t_logits, t_features = d.teacher.forward_features(x)
        logits, features = d.student.forward_features(x)
        losses = {"ce": d.hard_loss(logits, y)}
        losses |= self.added(d, logits, features, t_logits, t_features, y, epoch)
        return logits, losses


def paired_stage_shapes(method: str, student: nn.Module, teacher: nn.Module, input_shape: tuple[int, int, int]
                        ) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
    """The stage output shapes (C, H, W) of both networks, for methods that compare stage i with stage i at
    equal feature sizes (the channel counts may differ)."""
    s, t = student.stage_shapes(input_shape), teacher.stage_shapes(input_shape)
    if [x[1:] for x in s] != [x[1:] for x in t]:
        raise KDError(f"{METHODS[method]['label']} pairs stage with stage at equal feature sizes; the student's are "
                      f"{[x[1:] for x in s]}, the teacher's {[x[1:] for x in t]}")
    return s, t


def method_class(name: str) -> type[Method]:
    """The `Method` class of a row of the table, imported by the row's module name."""
    return importlib.import_module(METHODS[name]["module"]).Method
