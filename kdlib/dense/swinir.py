"""SwinIR (Liang et al. 2021), seed 002's super-resolution teacher: Swin window attention in residual blocks."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from kdlib.dense.sr_base import _conv3x3, _SRNet, _upsampler

# Swin's additive mask value: softmax weight e^-100, i.e. none, without the NaN an all -inf row could give.
MASK_VALUE = -100.0


def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """B x H x W x C -> (B * windows) x window_size^2 x C, windows in row-major order, tokens row-major inside."""
    b, h, w, c = x.shape
    x = x.view(b, h // window_size, window_size, w // window_size, window_size, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window_size * window_size, c)


def window_merge(windows: torch.Tensor, window_size: int, height: int, width: int) -> torch.Tensor:
    """The inverse of `window_partition`."""
    c = windows.shape[-1]
    x = windows.view(-1, height // window_size, width // window_size, window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, height, width, c)


def shifted_window_mask(height: int, width: int, window_size: int, shift: int,
                        device: torch.device | None = None) -> torch.Tensor:
    """Additive attention mask (windows x N x N) for an image cyclically shifted by -shift on both axes.

    After the shift, the last `shift` rows and columns hold pixels wrapped around from the opposite edge; a token
    may attend only to tokens of its window from the same side of both wraps (0), not across them (MASK_VALUE).
    """
    rows = (torch.arange(height, device=device) >= height - shift).long()
    cols = (torch.arange(width, device=device) >= width - shift).long()
    region = (2 * rows[:, None] + cols[None, :]).view(1, height, width, 1)
    ids = window_partition(region, window_size).squeeze(-1)
    return (ids[:, None, :] != ids[:, :, None]).float() * MASK_VALUE


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows with a learned relative position bias (Swin, Liu et al. 2021)."""

    def __init__(self, dim: int, window_size: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embedding dim {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        # One bias per head for each of the (2w-1)^2 relative offsets between two tokens of a window.
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        coords = torch.stack(torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij"))
        coords = coords.flatten(1)
        relative = coords[:, :, None] - coords[:, None, :] + window_size - 1  # 2 x N x N, offsets from 0
        self.register_buffer("relative_position_index", relative[0] * (2 * window_size - 1) + relative[1],
                             persistent=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B * windows) x N x C; mask: windows x N x N, added to the attention logits."""
        bw, n, c = x.shape
        q, k, v = self.qkv(x).view(bw, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(n, n, self.num_heads).permute(2, 0, 1)  # heads x N x N
        if mask is not None:
            windows = mask.shape[0]
            bias = (bias[None, None] + mask[None, :, None]).expand(bw // windows, -1, -1, -1, -1)
            bias = bias.reshape(bw, self.num_heads, n, n)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        return self.proj(out.transpose(1, 2).reshape(bw, n, c))


class SwinLayer(nn.Module):
    """LayerNorm, (shifted) window attention, residual; LayerNorm, GELU MLP, residual. On B x H x W x C."""

    def __init__(self, dim: int, num_heads: int, window_size: int, shift: int, mlp_ratio: float):
        super().__init__()
        self.window_size = window_size
        self.shift = shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h, w, _ = x.shape
        y = self.norm1(x)
        mask = None
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
            mask = shifted_window_mask(h, w, self.window_size, self.shift, device=x.device)
        y = window_merge(self.attn(window_partition(y, self.window_size), mask), self.window_size, h, w)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + y
        return x + self.mlp(self.norm2(x))


class RSTB(nn.Module):
    """Residual Swin transformer block: Swin layers (every second one shifted by half a window), a 3x3 conv and a
    residual connection. On B x C x H x W."""

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int, mlp_ratio: float):
        super().__init__()
        self.layers = nn.ModuleList(
            SwinLayer(dim, num_heads, window_size, 0 if i % 2 == 0 else window_size // 2, mlp_ratio)
            for i in range(depth))
        self.conv = _conv3x3(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.permute(0, 2, 3, 1)
        for layer in self.layers:
            y = layer(y)
        return x + self.conv(y.permute(0, 3, 1, 2))


class SwinIR(_SRNet):
    """SwinIR (Liang et al. 2021, arXiv:2108.10257) for classical SR with a pixel-shuffle upsampler.

    The defaults are the paper's lightweight size (embed 60, 4 RSTBs of 6 layers, 6 heads, window 8, MLP ratio 2).
    Inputs of any size: padded (reflect) to a multiple of the window, outputs and features cropped back.
    """

    def __init__(self, *, scale: int = 4, embed_dim: int = 60, depths: tuple[int, ...] = (6, 6, 6, 6),
                 num_heads: int = 6, window_size: int = 8, mlp_ratio: float = 2.0):
        super().__init__(scale, embed_dim)
        self.window_size = window_size
        self.conv_first = _conv3x3(3, embed_dim)
        self.embed_norm = nn.LayerNorm(embed_dim)
        self.layers = nn.ModuleList(RSTB(embed_dim, depth, num_heads, window_size, mlp_ratio) for depth in depths)
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = _conv3x3(embed_dim, embed_dim)
        self.upsample = _upsampler(embed_dim, scale)
        self.conv_last = _conv3x3(embed_dim, 3)
        for module in self.modules():
            if isinstance(module, nn.Linear):  # Swin's init; LayerNorm and conv keep PyTorch's defaults
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    @staticmethod
    def _layer_norm(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
        return norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = x.shape[-2:]
        ws = self.window_size
        x = F.pad(x - self.mean, (0, -w % ws, 0, -h % ws), mode="reflect")
        shallow = self.conv_first(x)
        deep = self._layer_norm(self.embed_norm, shallow)
        for layer in self.layers:
            deep = layer(deep)
        features = self.conv_after_body(self._layer_norm(self.norm, deep)) + shallow
        image = self.conv_last(self.upsample(features)) + self.mean
        return image[..., :h * self.scale, :w * self.scale], features[..., :h, :w]
