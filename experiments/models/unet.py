"""A small U-Net ``F(x, c_noise)`` for the EDM-preconditioned denoisers of ``experiments.models``.

Layout (Ronneberger et al. 2015; residual blocks as in Ho et al. 2020 / Karras et al. 2022):
input 3x3 conv, then per resolution level ``blocks_per_level`` residual blocks
``h + conv(SiLU(GN(conv(SiLU(GN(h))) + W e))))`` and a stride-2 conv down; one middle block;
the mirror image with skip concatenation and nearest-neighbour upsampling + 3x3 conv; output
``conv(SiLU(GN(h)))`` initialised to zero (so an untrained denoiser is ``c_skip x``).
The noise embedding ``e`` is an MLP on Fourier features ``[cos(2 pi f_k c), sin(2 pi f_k c)]`` of
``c_noise`` with fixed frequencies ``f_k ~ N(0, 16)`` (Tancik et al. 2020, as in EDM's NCSN++).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["UNet", "UNetConfig"]


@dataclass(frozen=True)
class UNetConfig:
    """Hyper-parameters of ``UNet``; stored in checkpoints as a plain dict (``asdict``)."""

    channels: int = 1
    base_channels: int = 32
    channel_mult: tuple[int, ...] = (1, 2)
    blocks_per_level: int = 1
    embedding_dim: int = 128
    fourier_features: int = 16
    groups: int = 8

    def __post_init__(self) -> None:
        if self.channels < 1 or self.base_channels < 1 or self.blocks_per_level < 1:
            raise ValueError(f"channel and block counts must be positive: {self}")
        if not self.channel_mult or min(self.channel_mult) < 1:
            raise ValueError(f"channel_mult must be non-empty positive integers: {self}")
        if any((self.base_channels * m) % self.groups for m in self.channel_mult):
            raise ValueError(f"every level's channel count must be divisible by groups: {self}")
        object.__setattr__(self, "channel_mult", tuple(self.channel_mult))

    def to_dict(self) -> dict:
        return asdict(self)


class FourierEmbedding(nn.Module):
    """``c -> [cos(2 pi f c), sin(2 pi f c)]`` with fixed frequencies ``f ~ N(0, 16)``."""

    def __init__(self, count: int, scale: float = 16.0) -> None:
        super().__init__()
        self.register_buffer(
            "frequencies", torch.randn(count, generator=torch.Generator().manual_seed(0)) * scale
        )

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        angle = 2 * math.pi * c[:, None].to(self.frequencies.dtype) * self.frequencies
        return torch.cat([angle.cos(), angle.sin()], dim=1)


class ResidualBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, embedding_dim: int, groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(min(groups, in_ch), in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.embed = nn.Linear(embedding_dim, out_ch)
        self.norm2 = nn.GroupNorm(groups, out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        r = self.conv1(F.silu(self.norm1(h)))
        r = r + self.embed(emb)[:, :, None, None]
        r = self.conv2(F.silu(self.norm2(r)))
        return self.skip(h) + r


class UNet(nn.Module):
    """``F(x, c_noise)``: ``x`` of shape ``(B, channels, H, W)``, ``c_noise`` of shape ``(B,)``.

    ``H`` and ``W`` must be divisible by ``2 ** (len(channel_mult) - 1)``.
    """

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        widths = [c.base_channels * m for m in c.channel_mult]
        self.fourier = FourierEmbedding(c.fourier_features)
        self.embedding = nn.Sequential(
            nn.Linear(2 * c.fourier_features, c.embedding_dim),
            nn.SiLU(),
            nn.Linear(c.embedding_dim, c.embedding_dim),
        )
        self.stem = nn.Conv2d(c.channels, widths[0], 3, padding=1)
        self.down_blocks = nn.ModuleList()
        self.downsample = nn.ModuleList()
        ch = widths[0]
        for level, width in enumerate(widths):
            blocks = nn.ModuleList()
            for _ in range(c.blocks_per_level):
                blocks.append(ResidualBlock(ch, width, c.embedding_dim, c.groups))
                ch = width
            self.down_blocks.append(blocks)
            if level < len(widths) - 1:
                self.downsample.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
        self.middle = ResidualBlock(ch, ch, c.embedding_dim, c.groups)
        self.up_blocks = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for level in reversed(range(len(widths))):
            blocks = nn.ModuleList()
            for _ in range(c.blocks_per_level):
                blocks.append(
                    ResidualBlock(ch + widths[level], widths[level], c.embedding_dim, c.groups)
                )
                ch = widths[level]
            self.up_blocks.append(blocks)
            if level > 0:
                self.upsample.append(nn.Conv2d(ch, ch, 3, padding=1))
        self.head_norm = nn.GroupNorm(c.groups, ch)
        self.head = nn.Conv2d(ch, c.channels, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        factor = 2 ** (len(self.config.channel_mult) - 1)
        if x.ndim != 4 or x.shape[1] != self.config.channels:
            raise ValueError(
                f"expected x of shape (B, {self.config.channels}, H, W), got {tuple(x.shape)}"
            )
        if x.shape[2] % factor or x.shape[3] % factor:
            raise ValueError(f"H and W must be divisible by {factor}, got {tuple(x.shape[2:])}")
        emb = self.embedding(self.fourier(c_noise.reshape(-1).expand(x.shape[0])))
        h = self.stem(x)
        skips = []
        for level, blocks in enumerate(self.down_blocks):
            for block in blocks:
                h = block(h, emb)
                skips.append(h)
            if level < len(self.downsample):
                h = self.downsample[level](h)
        h = self.middle(h, emb)
        for level, blocks in enumerate(self.up_blocks):
            for block in blocks:
                h = block(torch.cat([h, skips.pop()], dim=1), emb)
            if level < len(self.upsample):
                h = self.upsample[level](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.head(F.silu(self.head_norm(h)))
