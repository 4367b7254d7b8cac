"""LIIF: the local implicit image function (Chen et al., CVPR 2021), a Table 1 baseline.

LIIF represents the image as a continuous function decoded by one shared MLP ``f_theta`` from the
latent code ``z*`` nearest to each query ``x_q``:

    I(x_q) = sum_t  S_t / S * f_theta(z*_t, x_q - v*_t, cell)

where ``t`` runs over the 4 latent codes around ``x_q`` (the local ensemble) and ``S_t`` is the
area of the rectangle between ``x_q`` and the *diagonally opposite* code ``v*_{3-t}``.
``z*`` is the 3x3 neighbourhood of the EDSR feature, unfolded (``9 * n_feats`` channels).

As in the original, there are no Fourier terms (that is LTE's contribution) and no bilinear skip
of the input. The only difference from LIIF is optional: ``cfg.modulation`` lets EDSR's residual
blocks be conditioned on the implicit degradation representation, as in Section 3.3 of the paper.
Sizes come from ``ModelConfig``: the MLP hidden layers are ``cfg.mlp`` (LIIF: 256 x 4).
"""

from __future__ import annotations

import torch
from torch import nn

from asbsr.config import ModelConfig
from asbsr.models.coords import ensemble_for, gather_neighbours, gather_ready
from asbsr.models.edsr import EDSR
from asbsr.models.heads import cell_in_lr_pixels, make_mlp, normalise, unfold3x3


def encode_unfolded(encoder: EDSR, lr: torch.Tensor, rep: torch.Tensor | None,
                    modulated: bool) -> dict[str, torch.Tensor]:
    """The features LIIF and MetaSR share: ``{"inp": (lr - 0.5) / 0.5, "feat": the 3x3-unfolded
    EDSR features (B, 9 n_feats, h, w)}``; ``rep`` is used only when ``modulated``."""
    inp = normalise(lr)
    return {"inp": inp, "feat": gather_ready(unfold3x3(encoder(inp, rep if modulated else None)))}


class LIIF(nn.Module):
    """EDSR features + LIIF decoder.

    ``encode(lr (B,3,h,w) in [0,1], rep)`` -> ``{"inp": (B,3,h,w), "feat": (B, 9*n_feats, h, w)}``
    (``feat`` is already unfolded so that the query step is a pure lookup).
    ``query(features, coord (B,Q,2), cell (B,Q,2))`` -> ``(B, Q, 3)`` in [0, 1] space, unclamped.
    """

    def __init__(self, cfg: ModelConfig, rep_dim: int = 256):
        super().__init__()
        self.modulated = cfg.modulation
        self.local_ensemble = cfg.local_ensemble
        self.encoder = EDSR(cfg.n_resblocks, cfg.n_feats, rep_dim if cfg.modulation else None,
                            cfg.modulation_slope)
        # Decoder input: unfolded feature (9C) + relative coordinate (2) + cell (2).
        self.decoder = make_mlp(cfg.n_feats * 9 + 4, cfg.mlp, 3)

    @property
    def receptive_radius(self) -> int:
        """LR pixels of context one encoded pixel depends on: EDSR's, plus 1 for the 3x3 unfold
        (tiled encoding needs a halo at least this wide)."""
        return self.encoder.receptive_radius + 1

    def encode(self, lr: torch.Tensor, rep: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return encode_unfolded(self.encoder, lr, rep, self.modulated)

    def query(self, features: dict[str, torch.Tensor], coord: torch.Tensor,
              cell: torch.Tensor, centred: bool = False) -> torch.Tensor:
        """``centred``: the queries lie on feature-pixel centres (``coords.ensemble_for``)."""
        feat = features["feat"]
        height, width = feat.shape[-2:]
        (codes,), rel_coord, weights = gather_neighbours([feat], coord,
                                                         ensemble_for(self.local_ensemble, centred))
        # codes (B, N, Q, 9C), rel_coord (B, N, Q, 2), weights (B, N, Q).
        rel_cell = cell_in_lr_pixels(cell, height, width).unsqueeze(1).expand_as(rel_coord)
        pred = self.decoder(torch.cat([codes, rel_coord, rel_cell], dim=-1))  # (B, N, Q, 3)
        out = (pred * weights.unsqueeze(-1)).sum(dim=1)
        return out * 0.5 + 0.5

    def forward(self, lr: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor,
                rep: torch.Tensor | None = None) -> torch.Tensor:
        return self.query(self.encode(lr, rep), coord, cell)
