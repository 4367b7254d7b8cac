"""The LTE head: local texture estimator on EDSR features (Section 3.3, after Lee & Jin, CVPR 2022).

An image is a continuous function of the coordinate. For a query at ``coord`` with cell ``cell``
and a nearest LR feature at relative coordinate ``δ`` (in feature pixels x 2, i.e. multiplied by
``(h, w)``), LTE estimates its dominant Fourier components:

    amplitude  A = coef(feat)                       (B, width, h, w)   conv 3x3
    frequency  F = freq(feat)                       (B, width, h, w)   conv 3x3, width/2 2-vectors
    phase      φ = W_φ · (cell · (h, w))            (B, Q, width/2)    linear, no bias

    s(δ) = A ⊙ [cos(π (F δ + φ)), sin(π (F δ + φ))]       (B, Q, width)
    I(coord) = Σ_n w_n · MLP(s(δ_n)) + bilinear(LR, coord)

summing over the 4 nearest features (local ensemble, area weights ``w_n``) or the single nearest
one. The sinusoid's argument grows with the learned frequencies, so it is kept in fp32 even under
autocast (a half-precision phase would alias).

Inputs are normalised as ``(x - 0.5) / 0.5``; the output is mapped back with ``* 0.5 + 0.5`` and is
*not* clamped (training compares it to the target as it is; ``asbsr.inference.upscale`` clamps).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from asbsr.config import ModelConfig
from asbsr.models.coords import bilinear_sample, ensemble_for, gather_neighbours, gather_ready
from asbsr.models.edsr import EDSR
from asbsr.models.heads import cell_in_lr_pixels, make_mlp, normalise


def fourier_rows(coef: torch.Tensor, freq: torch.Tensor, rel_coord: torch.Tensor,
                 phase: torch.Tensor) -> torch.Tensor:
    """The MLP's input ``A ⊙ [cos(π (F δ + φ)), sin(π (F δ + φ))]``: ``(B, N, Q, C)``.

    ``coef`` (A) and ``freq`` (F) ``(B, N, Q, C)`` at each query's neighbours, ``rel_coord`` (δ)
    ``(B, N, Q, 2)``, ``phase`` (φ) ``(B, 1, Q, C/2)``. Channels ``(2k, 2k+1)`` of F form the
    k-th 2-D frequency vector F_k, so the k-th angle is
    ``π (F_k · δ + φ_k) = F_k,y (π δ_y) + F_k,x (π δ_x) + π φ_k``: two fused multiply-adds over
    the even and the odd channels (a product over the pairs followed by a sum over an axis of
    size 2 took 4x longer on a CPU: ``benchmarks/query_levers.py``).
    """
    rel_pi = rel_coord * math.pi
    angle = torch.addcmul(phase * math.pi, freq[..., 0::2], rel_pi[..., 0:1])
    angle = angle.addcmul_(freq[..., 1::2], rel_pi[..., 1:2])  # (B, N, Q, C/2)
    return coef * torch.cat([torch.cos(angle), torch.sin(angle)], dim=-1)


class LTE(nn.Module):
    """EDSR feature extractor (modulated or plain) + LTE head.

    ``encode(lr, rep)`` -> ``{"inp", "feat", "coef", "freq"}`` at LR resolution;
    ``query(features, coord (B, Q, 2), cell (B, Q, 2))`` -> ``(B, Q, 3)`` RGB in [0, 1] space;
    ``forward(lr, coord, cell, rep=None)`` does both.
    """

    def __init__(self, cfg: ModelConfig, rep_dim: int = 256):
        super().__init__()
        if cfg.width < 2 or cfg.width % 2:
            raise ValueError(f"LTE width must be a positive even number, got {cfg.width}")
        self.modulated = bool(cfg.modulation)
        self.local_ensemble = bool(cfg.local_ensemble)
        self.width = cfg.width
        self.encoder = EDSR(cfg.n_resblocks, cfg.n_feats, rep_dim if self.modulated else None,
                            cfg.modulation_slope)
        self.coef = nn.Conv2d(cfg.n_feats, cfg.width, 3, padding=1)
        self.freq = nn.Conv2d(cfg.n_feats, cfg.width, 3, padding=1)
        self.phase = nn.Linear(2, cfg.width // 2, bias=False)
        self.mlp = make_mlp(cfg.width, tuple(cfg.mlp), 3)

    @property
    def receptive_radius(self) -> int:
        """LR pixels of context on each side that the encoded maps depend on: EDSR's radius
        (``2 * n_resblocks + 2``) plus one for the 3x3 coef/freq convolutions."""
        return self.encoder.receptive_radius + 1

    def encode(self, lr: torch.Tensor, rep: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``lr``: ``(B, 3, h, w)`` in [0, 1]; ``rep``: ``(B, rep_dim)`` (ignored if not modulated).

        Returns maps at LR resolution: ``inp (B, 3, h, w)`` = ``(lr - 0.5) / 0.5``,
        ``feat (B, n_feats, h, w)``, ``coef`` and ``freq`` ``(B, width, h, w)``.
        """
        inp = normalise(lr)
        feat = self.encoder(inp, rep if self.modulated else None)
        return {"inp": inp, "feat": feat, "coef": gather_ready(self.coef(feat)),
                "freq": gather_ready(self.freq(feat))}

    def query(self, features: dict[str, torch.Tensor], coord: torch.Tensor,
              cell: torch.Tensor, centred: bool = False) -> torch.Tensor:
        """RGB at ``coord`` ``(B, Q, 2)`` for output pixels of size ``cell`` ``(B, Q, 2)``:
        ``(B, Q, 3)`` in [0, 1] space (not clamped). ``centred``: every query lies on a feature-pixel
        centre (the cycle's LR grid), where the local ensemble reduces to the nearest feature up to
        ~1e-9 (``coords.ensemble_for``), so only that one is decoded."""
        coef_map, freq_map = features["coef"], features["freq"]
        height, width = coef_map.shape[-2:]
        (coef, freq), rel_coord, weights = gather_neighbours(
            [coef_map, freq_map], coord, ensemble_for(self.local_ensemble, centred))  # (B, N, Q, C), (B, N, Q, 2), (B, N, Q)
        # At least fp32 (fp64 if the model is fp64), whatever the autocast or parameter dtype.
        dtype = torch.promote_types(self.phase.weight.dtype, torch.float32)
        with torch.autocast(device_type=coord.device.type, enabled=False):
            # The phase depends on the cell measured in LR feature pixels.
            rel_cell = cell_in_lr_pixels(cell.to(dtype), height, width)
            phase = F.linear(rel_cell, self.phase.weight.to(dtype)).unsqueeze(1)  # (B, 1, Q, C/2)
            rows = fourier_rows(coef, freq.to(dtype), rel_coord.to(dtype), phase)  # (B, N, Q, C)
        # All neighbours go through the MLP in one call; the result is fp32 (or fp64) even under
        # autocast.
        rgb = self.mlp(rows).to(dtype)  # (B, N, Q, 3)
        out = (rgb * weights.unsqueeze(-1).to(rgb.dtype)).sum(dim=1)
        out = out + bilinear_sample(features["inp"], coord).to(out.dtype)
        return out * 0.5 + 0.5

    def forward(self, lr: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor,
                rep: torch.Tensor | None = None) -> torch.Tensor:
        """``query(encode(lr, rep), coord, cell)``: ``(B, Q, 3)``."""
        return self.query(self.encode(lr, rep), coord, cell)
