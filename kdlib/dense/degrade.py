"""Seed 002's super-resolution degradation: Gaussian blur, then bicubic down-sampling by the scale."""
import math

import torch
import torch.nn.functional as F


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """The 1-D Gaussian exp(-x^2 / 2 sigma^2) on x = -r..r, r = ceil(3 sigma), normalised to sum 1."""
    if sigma <= 0:
        raise ValueError(f"Gaussian sigma must be positive, got {sigma}")
    radius = math.ceil(3 * sigma)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-x ** 2 / (2 * sigma ** 2))
    return (kernel / kernel.sum()).float()


def blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of N x C x H x W images with reflect padding; sigma 0 returns the input."""
    if sigma == 0:
        return images
    kernel = gaussian_kernel(sigma).to(images)
    radius = kernel.numel() // 2
    channels = images.shape[1]
    rows = kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
    cols = kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
    out = F.conv2d(F.pad(images, (radius, radius, 0, 0), mode="reflect"), rows, groups=channels)
    return F.conv2d(F.pad(out, (0, 0, radius, radius), mode="reflect"), cols, groups=channels)


def degrade(hr: torch.Tensor, scale: int, blur_sigma: float) -> torch.Tensor:
    """Blur HR images in [0, 1], then bicubic (anti-aliased) down-sampling by `scale`, clamped to [0, 1]."""
    height, width = hr.shape[-2:]
    if height % scale or width % scale:
        raise ValueError(f"image size {height}x{width} is not divisible by the scale {scale}")
    # An explicit output size gives the same result as scale_factor=1/scale without float rounding of the size.
    lr = F.interpolate(blur(hr, blur_sigma), size=(height // scale, width // scale), mode="bicubic",
                       antialias=True, align_corners=False)
    return lr.clamp(0, 1)


def upscale_bicubic(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """The bicubic baseline: LR images up-sampled by `scale`, clamped to [0, 1]."""
    return F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False).clamp(0, 1)
