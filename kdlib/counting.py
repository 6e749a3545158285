"""Model size and cost: parameters and FLOPs of one forward pass."""
import torch
from torch import nn


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """FLOPs of one forward pass on one image, by PyTorch's own counter (a multiply-add counts 2)."""
    from torch.utils.flop_counter import FlopCounterMode
    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *input_shape, device=next(model.parameters()).device))
    model.train(was_training)
    return int(counter.get_total_flops())
