"""Seed 002's edge-detection networks: segmentation-models-pytorch U-Nets with one logit per pixel."""
from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterator

from torch import nn

from kdlib.errors import KDError


@contextlib.contextmanager
def _hub_offline() -> Iterator[None]:
    """Make huggingface_hub serve files from its local cache only (it reads HF_HUB_OFFLINE at import)."""
    from huggingface_hub import constants
    saved = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved


def _hub_reachable() -> bool:
    """One quick request: without a network, huggingface_hub retries for about half a minute per file."""
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session
    try:
        get_session().head(constants.ENDPOINT, timeout=3)
    except Exception:  # offline mode, DNS, connection and timeout errors alike
        return False
    return True


def unet(encoder: str, encoder_weights: str | None = None,
         decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16)) -> nn.Module:
    """smp.Unet over `encoder` with one output channel: images (N, 3, H, W) -> edge logits (N, 1, H, W).

    The encoder depth is len(decoder_channels); H and W must be multiples of 2^depth. Pretrained
    `encoder_weights` (e.g. "imagenet") come from the local Hugging Face cache, or are downloaded when the
    Hub answers; `None` initialises at random.
    """
    import segmentation_models_pytorch as smp
    names = smp.encoders.get_encoder_names()
    if encoder not in names:
        like = difflib.get_close_matches(encoder, names, n=4) or ["resnet34", "mobilenet_v2", "efficientnet-b0"]
        raise KDError(f"unknown U-Net encoder {encoder!r}; valid names include {', '.join(like)} "
                      f"(segmentation_models_pytorch.encoders.get_encoder_names() lists all {len(names)})")
    available = list(smp.encoders.encoders[encoder]["pretrained_settings"])
    if encoder_weights is not None and encoder_weights not in available:
        raise KDError(f"encoder {encoder!r} has no weights {encoder_weights!r}; it has {available} or null")

    def build() -> nn.Module:
        return smp.Unet(encoder_name=encoder, encoder_weights=encoder_weights, encoder_depth=len(decoder_channels),
                        decoder_channels=decoder_channels, classes=1)

    if encoder_weights is None:
        return build()
    try:
        with _hub_offline():
            return build()
    except Exception as e:  # a cache miss, or a corrupt or mismatched file
        error = e
    if _hub_reachable():
        try:
            return build()
        except Exception as e:
            error = e
    first = str(error).splitlines()[0] if str(error) else type(error).__name__
    raise KDError(f"could not load {encoder_weights!r} weights for encoder {encoder!r} from the Hugging Face "
                  f"cache or Hub ({first}); set encoder_weights: null to train from scratch") from None
