"""CNN image encoder (``type: resnet``): a small ResNet whose last feature map is the
grid the decoder attends to.

Built on plain torch (He et al. 2016 basic blocks; no torchvision)::

    image (B, 3, H, W) in [0, 1]
      -> normalize -> stem: conv3x3 stride 2, norm, ReLU          (B, widths[0], H/2, W/2)
      -> stage k: depths[k] basic blocks, the first with stride 2
         (stage 0 keeps the stem's resolution)                     (B, widths[-1], H', W')
      -> flatten the grid row by row, Linear to d_model, + learned
         row/column positions                                      memory (B, H'*W', D)

With 4 stages an image of 128 px gives an 8x8 grid (``H' = H / 16``). The mask is
all True: every grid cell is real. ``final_state`` is the mean of the memory as
``(h, c)``, each ``(B, 1, D)``, which an LSTM decoder's bridge turns into its first
state, as in Show, Attend and Tell (``h0 = f_init,h(mean a_i)``, ``c0 = f_init,c(..)``).

The task hands the images in ``src`` ``(B, 3, H, W)``; ``src_mask`` ``(B, 1)`` is
ignored (one image per row).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from transduce.config import ConfigError
from transduce.models.base import Encoder, EncoderOutput
from transduce.models.dropout import Dropout
from transduce.registry import BuildContext, register_encoder

# ImageNet-like statistics; the stem normalizes so callers pass plain [0, 1] pixels.
PIXEL_MEAN = (0.485, 0.456, 0.406)
PIXEL_STD = (0.229, 0.224, 0.225)


@dataclass
class ResNetEncoderConfig:
    widths: list = field(default_factory=lambda: [32, 64, 128, 256])  # channels per stage
    depths: list = field(default_factory=lambda: [1, 1, 1, 1])  # basic blocks per stage
    d_model: int = 256  # memory width D (a Linear from widths[-1]); 0 = widths[-1]
    norm: str = "batch"  # batch | group (GroupNorm, 8 groups; batch-size independent)
    dropout: float = 0.0  # on the memory
    positions: bool = True  # add learned row + column embeddings to the memory
    max_grid: int = 32  # largest grid side the positions cover


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.GroupNorm(min(8, channels), channels)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (1x1 projection when shapes differ)."""

    def __init__(self, c_in: int, c_out: int, stride: int, norm: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.norm1 = _norm(norm, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.norm2 = _norm(norm, c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), _norm(norm, c_out)
            )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, c_in, H, W)`` -> ``(B, c_out, H / stride, W / stride)``."""
        y = self.act(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return self.act(y + self.shortcut(x))


@register_encoder("resnet", ResNetEncoderConfig)
class ResNetEncoder(Encoder):
    """Images ``(B, 3, H, W)`` in ``[0, 1]`` -> memory ``(B, H'*W', D)``; see the module doc."""

    def __init__(self, cfg: ResNetEncoderConfig, ctx: BuildContext) -> None:
        super().__init__()
        where = "model.encoder"
        widths, depths = list(cfg.widths), list(cfg.depths)
        if not widths or len(widths) != len(depths):
            raise ConfigError(
                f"{where}.widths and {where}.depths must be non-empty lists of the same "
                f"length, got {widths} and {depths}"
            )
        if any(not isinstance(v, int) or v <= 0 for v in widths + depths):
            raise ConfigError(f"{where}.widths and depths must hold positive integers")
        if cfg.norm not in ("batch", "group"):
            raise ConfigError(f"{where}.norm must be batch or group, got {cfg.norm!r}")
        if not 0.0 <= cfg.dropout < 1.0:
            raise ConfigError(f"{where}.dropout must be in [0, 1), got {cfg.dropout}")
        self.register_buffer("mean", torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(PIXEL_STD).view(1, 3, 1, 1), persistent=False)
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, stride=2, padding=1, bias=False),
            _norm(cfg.norm, widths[0]),
            nn.ReLU(inplace=True),
        )
        blocks: list[nn.Module] = []
        c_in = widths[0]
        for k, (width, depth) in enumerate(zip(widths, depths)):
            for j in range(depth):
                stride = 2 if (k > 0 and j == 0) else 1
                blocks.append(BasicBlock(c_in, width, stride, cfg.norm))
                c_in = width
        self.blocks = nn.Sequential(*blocks)
        self.halvings = len(widths)  # stem /2, then /2 per stage after the first
        D = cfg.d_model or widths[-1]
        self.proj: nn.Module = nn.Linear(widths[-1], D) if D != widths[-1] else nn.Identity()
        self.max_grid = cfg.max_grid
        if cfg.positions:
            self.row_pos = nn.Parameter(torch.randn(cfg.max_grid, D) * 0.02)
            self.col_pos = nn.Parameter(torch.randn(cfg.max_grid, D) * 0.02)
        else:
            self.row_pos = self.col_pos = None
        self.dropout = Dropout(cfg.dropout)
        self.output_dim = D

    def grid(self, image_size: int) -> int:
        """Grid side ``H'`` for square images of ``image_size`` pixels."""
        side = image_size
        for _ in range(self.halvings):  # each stride-2 3x3 conv (padding 1) gives ceil(n / 2)
            side = (side + 1) // 2
        return side

    def features(self, src: Tensor) -> Tensor:
        """``(B, 3, H, W)`` -> the last feature map ``(B, C, H', W')``."""
        if src.dim() != 4 or src.size(1) != 3:
            raise ValueError(
                f"the resnet encoder expects images (B, 3, H, W), got {tuple(src.shape)}"
            )
        x = (src.float() - self.mean) / self.std
        return self.blocks(self.stem(x))

    def forward(self, src: Tensor, src_mask: Tensor | None = None) -> EncoderOutput:
        """src ``(B, 3, H, W)`` -> memory ``(B, H'*W', D)``, mask ``(B, H'*W')`` all True."""
        fmap = self.features(src)  # (B, C, H', W')
        B, C, Hg, Wg = fmap.shape
        memory = self.proj(fmap.flatten(2).transpose(1, 2))  # (B, H'*W', D)
        if self.row_pos is not None:
            if max(Hg, Wg) > self.max_grid:
                raise ValueError(
                    f"image grid {Hg}x{Wg} exceeds model.encoder.max_grid {self.max_grid}; "
                    "use smaller images or a larger max_grid"
                )
            pos = self.row_pos[:Hg].unsqueeze(1) + self.col_pos[:Wg].unsqueeze(0)  # (H', W', D)
            memory = memory + pos.reshape(1, Hg * Wg, -1)
        memory = self.dropout(memory)
        mask = torch.ones(B, Hg * Wg, dtype=torch.bool, device=memory.device)
        pooled = memory.mean(dim=1, keepdim=True)  # (B, 1, D)
        return EncoderOutput(memory=memory, mask=mask, final_state=(pooled, pooled))


__all__ = ["BasicBlock", "ResNetEncoder", "ResNetEncoderConfig"]
