"""Meta-SR's Meta-Upscale module (Hu et al., CVPR 2019), a Table 1 baseline.

Meta-Upscale predicts, for every output pixel ``(i, j)`` of an ``x s`` upscaling, its own
convolution filter from the pixel's position relative to the LR grid:

    W(i, j) = phi( i/s - floor(i/s),  j/s - floor(j/s),  1/s )          (Pos2Weight)
    I_SR(i, j) = < W(i, j),  F_LR[3x3 neighbourhood of (floor(i/s), floor(j/s))] >

``phi`` is an MLP ``3 -> hidden -> 9 * C * 3``; the filter is applied to the 3x3 neighbourhood of
the LR feature pixel under the output pixel's top-left corner (no ensemble).

Adaptation to continuous coordinates (the same as the MetaSR variant in LIIF's code): a query is
the centre ``coord`` of an output pixel with extent ``cell``, not an integer index. The output
pixel ``i`` of Meta-SR is the one whose *top-left corner* is at ``i`` HR pixels, i.e. at
``coord - cell / 2``; so

* the LR pixel is the one containing that corner (``floor(i/s)``), and the offset ``(dh, dw)``
  is the corner's position inside it, measured from the LR pixel's top-left corner in LR pixel
  units, in ``[0, 1)`` (``i/s - floor(i/s)``). A ``1e-6`` nudge keeps a corner that lies exactly
  on an LR pixel border (every integer scale) from being rounded into the pixel before it;
* the scale is read from the cell: ``s = (2 / h) / cell_y``, so ``1/s = cell_y * h / 2``. Only
  the vertical scale is fed, as in Meta-SR, whose scales are isotropic.

As in Meta-SR there is no bilinear skip of the input. Sizes: the Pos2Weight hidden layer is
``cfg.width`` (Meta-SR: 256). ``cfg.local_ensemble`` is ignored: Meta-Upscale has no ensemble.
"""

from __future__ import annotations

import torch
from torch import nn

from asbsr.config import ModelConfig
from asbsr.models.baselines.liif import encode_unfolded
from asbsr.models.coords import nearest_index
from asbsr.models.edsr import EDSR
from asbsr.models.heads import make_mlp

CORNER_EPS = 1e-6


def meta_position(coord: torch.Tensor, cell: torch.Tensor, height: int,
                  width: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Meta-SR's ``floor(i/s)`` and Pos2Weight input for continuous queries.

    ``coord``, ``cell``: ``(B, Q, 2)``; ``height, width``: the LR feature grid. Returns the row
    and column ``(B, Q)`` of the LR pixel under each output pixel's top-left corner, and the
    position ``(B, Q, 3)`` = ``(dh, dw, 1/s)``: that corner's offset from the LR pixel's top-left
    corner in LR pixels, in ``[0, 1)``, and ``1/s = cell_y * h / 2``.
    """
    corner = coord - cell / 2
    row, col = nearest_index(corner + CORNER_EPS, height, width)
    lr_corner = torch.stack([-1 + 2 * row.to(coord.dtype) / height,
                             -1 + 2 * col.to(coord.dtype) / width], dim=-1)
    size = torch.tensor([height, width], device=coord.device, dtype=coord.dtype)
    offset = (corner - lr_corner) * size / 2
    return row, col, torch.cat([offset, cell[..., :1] * height / 2], dim=-1)


def pos2weight_input(coord: torch.Tensor, cell: torch.Tensor, height: int,
                     width: int) -> torch.Tensor:
    """Meta-Upscale's position input ``(dh, dw, 1/s)`` for each query: ``(B, Q, 3)``."""
    return meta_position(coord, cell, height, width)[2]


class MetaSR(nn.Module):
    """EDSR features + Meta-Upscale.

    ``encode`` -> ``{"inp": (B,3,h,w), "feat": (B, 9*n_feats, h, w)}`` (the unfolded 3x3
    neighbourhoods); ``query(features, coord, cell)`` -> ``(B, Q, 3)`` in [0, 1] space, unclamped.
    """

    def __init__(self, cfg: ModelConfig, rep_dim: int = 256):
        super().__init__()
        self.modulated = cfg.modulation
        self.n_feats = cfg.n_feats
        self.encoder = EDSR(cfg.n_resblocks, cfg.n_feats, rep_dim if cfg.modulation else None,
                            cfg.modulation_slope)
        # Pos2Weight: (dh, dw, 1/s) -> one 3x3xCx3 filter per query.
        self.pos2weight = make_mlp(3, (cfg.width,), 9 * cfg.n_feats * 3)

    @property
    def receptive_radius(self) -> int:
        """LR pixels of context one encoded pixel depends on: EDSR's, plus 1 for the 3x3 unfold."""
        return self.encoder.receptive_radius + 1

    def encode(self, lr: torch.Tensor, rep: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return encode_unfolded(self.encoder, lr, rep, self.modulated)

    def query(self, features: dict[str, torch.Tensor], coord: torch.Tensor,
              cell: torch.Tensor, centred: bool = False) -> torch.Tensor:
        """``centred`` is accepted for a common signature and changes nothing: Meta-Upscale
        reads one feature per query anyway."""
        feat = features["feat"]
        batch, queries, _ = coord.shape
        height, width = feat.shape[-2:]
        row, col, position = meta_position(coord, cell, height, width)
        table = feat.flatten(2).transpose(1, 2)  # (B, h*w, 9C)
        batch_index = torch.arange(batch, device=coord.device).unsqueeze(1)
        patch = table[batch_index, row * width + col]  # (B, Q, 9C): the neighbourhood under it
        weight = self.pos2weight(position).view(batch, queries, patch.shape[-1], 3)
        out = torch.einsum("bqc,bqco->bqo", patch, weight)
        return out * 0.5 + 0.5

    def forward(self, lr: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor,
                rep: torch.Tensor | None = None) -> torch.Tensor:
        return self.query(self.encode(lr, rep), coord, cell)
