"""Loss weights per epoch: alpha of the KD term (loss = alpha * L_KD + (1 - alpha) * L_CE), and the linear
warm-up that DKD and ReviewKD give their terms."""
from __future__ import annotations

from kdlib.config import Distill

THREE_PHASES = (1.0, 0.5, 0.0)  # seed 000: teacher only, then half and half, then labels only
WARMUP_SHARE = 20 / 240  # DKD and ReviewKD ramp their terms in linearly over their first 20 of 240 epochs


def alpha_at(spec: Distill, epoch: int, epochs: int) -> float:
    """Alpha for 0-based `epoch` of `epochs`.

    three_phase splits the epochs into thirds by floor(3 * epoch / epochs): with 50 epochs, epochs
    0-16 get 1, 17-33 get 0.5 and 34-49 get 0. linear goes from alpha at the first epoch to
    alpha_end at the last.
    """
    if spec.schedule == "three_phase":
        return THREE_PHASES[3 * epoch // epochs]
    if spec.schedule == "linear":
        return spec.alpha + (spec.alpha_end - spec.alpha) * (epoch / (epochs - 1) if epochs > 1 else 1.0)
    return spec.alpha


def warmup(epoch: int, epochs: int) -> float:
    """The weight at 0-based `epoch` of a term that rises linearly to 1 over the first 1/12 of the epochs."""
    return min(1.0, (epoch + 1) / max(1.0, WARMUP_SHARE * epochs))
