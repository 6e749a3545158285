"""Super-resolution metrics as reported in the SR literature: PSNR and SSIM on the Y channel, PSNR on RGB."""

import torch
import torch.nn.functional as F

from kdlib.dense.degrade import gaussian_kernel

_SSIM_SIGMA = 1.5  # Wang et al. 2004: an 11x11 Gaussian window (radius ceil(3 * 1.5) = 5)
_SSIM_K1, _SSIM_K2 = 0.01, 0.03


def rgb_to_y(images: torch.Tensor) -> torch.Tensor:
    """ITU-R BT.601 luma of N x 3 x H x W RGB images in [0, 1], on the [16, 235] scale of 8-bit video."""
    weights = images.new_tensor([65.481, 128.553, 24.966]).view(1, 3, 1, 1)
    return 16.0 + (images * weights).sum(dim=1, keepdim=True)


def _crop(images: torch.Tensor, border: int) -> torch.Tensor:
    return images[..., border:images.shape[-2] - border, border:images.shape[-1] - border] if border else images


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float, border: int = 0) -> float:
    """Mean over the batch of each image's PSNR in dB (inf for identical images), after cropping `border` pixels."""
    diff = _crop(a, border).double() - _crop(b, border).double()
    mse = diff.pow(2).flatten(1).mean(dim=1)
    return (10 * torch.log10(data_range ** 2 / mse)).mean().item()


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float, border: int = 0) -> float:
    """SSIM (Wang et al. 2004; Gaussian window, valid filtering) per channel, averaged over channels and images."""
    x, y = _crop(a, border).double(), _crop(b, border).double()
    channels = x.shape[1]
    g = gaussian_kernel(_SSIM_SIGMA).double().to(x.device)
    window = torch.outer(g, g).expand(channels, 1, -1, -1)

    def filt(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, window, groups=channels)

    mu_x, mu_y = filt(x), filt(y)
    var_x = filt(x * x) - mu_x ** 2
    var_y = filt(y * y) - mu_y ** 2
    cov = filt(x * y) - mu_x * mu_y
    c1, c2 = (_SSIM_K1 * data_range) ** 2, (_SSIM_K2 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return ssim_map.mean().item()


def quantise(images: torch.Tensor) -> torch.Tensor:
    """Round images in [0, 1] to 8 bit, as the deployed PNG output would be (clamped first)."""
    return torch.round(images.clamp(0, 1) * 255) / 255


def sr_scores(sr: torch.Tensor, hr: torch.Tensor, scale: int) -> dict[str, float]:
    """PSNR and SSIM on Y (0-255) and PSNR on RGB (0-1) of 8-bit-quantised images, `scale` border pixels cropped."""
    sr, hr = quantise(sr), quantise(hr)
    sr_y, hr_y = rgb_to_y(sr), rgb_to_y(hr)
    return {"psnr_y": psnr(sr_y, hr_y, 255.0, border=scale),
            "ssim_y": ssim(sr_y, hr_y, 255.0, border=scale),
            "psnr_rgb": psnr(sr, hr, 1.0, border=scale)}
