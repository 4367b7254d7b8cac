"""EDSR-baseline feature extractor, optionally modulated by the degradation representation
(Section 3.3).

EDSR-baseline without its upsampler: a 3x3 head convolution, ``n_resblocks`` residual blocks
(conv-ReLU-conv, residual scale 1, no BatchNorm), a 3x3 tail convolution, and a global skip from
the head's output. Every convolution is 3x3 with zero padding 1, so each output pixel depends on
the input within a radius of ``2 * n_resblocks + 2`` pixels (``receptive_radius``); tiled
inference relies on that number.

Modulation (Section 3.3, "weighted in a channel-wise manner by the coefficients transformed from
the degradation representation ... two fully-connected layers and a sigmoid"): in each block,

    x <- x + res(x) * sigmoid(FC(LeakyReLU(FC(r), slope)))

with ``FC: rep_dim -> n_feats -> n_feats`` and ``r`` the ``(B, rep_dim)`` representation from E,
broadcast over the spatial grid. The authors' ``slope`` is 0.01 (PyTorch's default; the paper
does not say); the shipped models were trained with 0.1, which ``model.modulation_slope`` keeps
as the default until they are retrained. With ``rep_dim=None`` the blocks are plain EDSR's, the
"no implicit representation" variant of Table 2.
"""

from __future__ import annotations

import torch
from torch import nn


def _conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, padding=1)


class ResBlock(nn.Module):
    """``x + conv(ReLU(conv(x)))``, the residual branch optionally scaled by ``sigmoid(FC(...))``."""

    def __init__(self, n_feats: int, rep_dim: int | None = None, slope: float = 0.01):
        super().__init__()
        self.conv1 = _conv3x3(n_feats, n_feats)
        self.conv2 = _conv3x3(n_feats, n_feats)
        self.modulation = None
        if rep_dim is not None:
            self.modulation = nn.Sequential(
                nn.Linear(rep_dim, n_feats), nn.LeakyReLU(slope, inplace=True),
                nn.Linear(n_feats, n_feats), nn.Sigmoid(),
            )

    def forward(self, x: torch.Tensor, rep: torch.Tensor | None = None) -> torch.Tensor:
        res = self.conv2(torch.relu(self.conv1(x)))
        if self.modulation is not None:
            res = res * self.modulation(rep)[:, :, None, None]
        return x + res


class EDSR(nn.Module):
    """EDSR-baseline body: ``(B, 3, h, w)`` normalised LR -> ``(B, n_feats, h, w)`` features.

    Args:
        n_resblocks: residual blocks (16 in the paper).
        n_feats: channels (64 in the paper).
        rep_dim: width of E's representation to modulate every block with, or ``None`` for the
            plain EDSR-baseline (``rep`` is then ignored).
        slope: negative slope of the LeakyReLU inside the modulation.
    """

    def __init__(self, n_resblocks: int = 16, n_feats: int = 64, rep_dim: int | None = None,
                 slope: float = 0.01):
        super().__init__()
        if n_resblocks < 0 or n_feats < 1:
            raise ValueError(f"need n_resblocks >= 0 and n_feats >= 1, got {n_resblocks}, {n_feats}")
        self.n_resblocks = n_resblocks
        self.n_feats = n_feats
        self.rep_dim = rep_dim
        self.head = _conv3x3(3, n_feats)
        self.blocks = nn.ModuleList(ResBlock(n_feats, rep_dim, slope) for _ in range(n_resblocks))
        self.tail = _conv3x3(n_feats, n_feats)

    @property
    def modulated(self) -> bool:
        return self.rep_dim is not None

    @property
    def receptive_radius(self) -> int:
        """LR pixels of context on each side that one output pixel depends on (one per conv)."""
        return 2 * self.n_resblocks + 2

    def forward(self, x: torch.Tensor, rep: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: ``(B, 3, h, w)`` normalised to about [-1, 1]; ``rep``: ``(B, rep_dim)`` when
        modulated, else ignored. Returns ``(B, n_feats, h, w)``."""
        if self.modulated:
            if rep is None:
                raise ValueError("this EDSR is modulated: pass the degradation representation rep")
            if rep.shape != (x.shape[0], self.rep_dim):
                raise ValueError(f"rep must be (B, {self.rep_dim}) = ({x.shape[0]}, {self.rep_dim}),"
                                 f" got {tuple(rep.shape)}")
        else:
            rep = None
        head = self.head(x)
        body = head
        for block in self.blocks:
            body = block(body, rep)
        return self.tail(body) + head
