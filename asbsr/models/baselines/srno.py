"""SRNO: the super-resolution neural operator (Wei & Zhang, CVPR 2023), a Table 1 baseline.

SRNO treats SR as an operator between function spaces in three steps:

1. *Lifting.* For each query ``x`` and each of its 4 nearest latent codes ``z_t`` (always the
   4-neighbour ensemble, whatever ``cfg.local_ensemble`` says -- it is part of SRNO's design):
   ``u_0(x) = W [z_1, r_1, ..., z_4, r_4, S_1..S_4, cell]`` with ``r_t`` the relative coordinate
   and ``S_t`` the area weights; ``W`` is a 1x1 conv (here a Linear per query) to ``width``.
2. *Kernel integrals,* two Galerkin-type attention blocks (Cao, NeurIPS 2021), ``H = 16`` heads:
   ``u_{l+1}(x) = u_l(x) + W_o( Q(u_l(x)) . (1/n) sum_y LN(K(u_l(y)))^T LN(V(u_l(y))) )``,
   followed by a residual FFN. ``(1/n) sum_y`` is a quadrature of the integral over the domain.
3. *Projection* ``width -> 3``, plus a bilinear sample of the LR input.

**Deviation: where the integral is discretised.** SRNO evaluates the integral over all pixels of
the HR training patch, so the output at one pixel depends on which other pixels are evaluated
with it. With randomly sampled training queries and chunked whole-image inference that would make
the result depend on the sample set and the chunk size. Here the quadrature points ``y`` are the
``h x w`` LR grid instead: each block updates a field sampled at the LR pixels (a map ``field_l``
``(B, width, h, w)``, computed once in ``encode`` by Galerkin *self*-attention, starting from a 1x1
conv of the EDSR feature), and each HR query is updated by the *same* block attending to that
field. So ``K`` and ``V`` come from the LR field, ``Q`` from the query: a query's output depends
only on the LR image and the query itself, never on its chunk. The attention is still global over
the image, so tiled encoding is *not* exact for this head.

Other choices of ours: the LR field starts from its own 1x1 conv of the EDSR feature (the
lifting above needs a query position and cell, which an LR pixel does not have); ``n = h * w``;
the FFN is ``width -> width -> width`` with GELU; the projection is a single Linear.
"""

from __future__ import annotations

import torch
from torch import nn

from asbsr.config import ModelConfig
from asbsr.models.coords import bilinear_sample, gather_neighbours
from asbsr.models.edsr import EDSR
from asbsr.models.heads import cell_in_lr_pixels, normalise

HEADS = 16
BLOCKS = 2


class GalerkinBlock(nn.Module):
    """Galerkin-type linear attention of tokens ``x`` over ``context``, plus a residual FFN.

    ``x``: ``(B, N, width)``, ``context``: ``(B, M, width)`` -> ``(B, N, width)``:
    ``x + W_o(Q(x) (LN(K(c))^T LN(V(c))) / M)`` then ``+ FFN(.)``; layer norms act per head.
    Because the ``d x d`` summary ``K^T V`` is formed from the context alone, each row of ``x``
    is processed independently of the other rows.
    """

    def __init__(self, width: int, heads: int = HEADS):
        super().__init__()
        if width % heads:
            raise ValueError(f"SRNO width {width} must be a multiple of {heads} heads")
        self.heads = heads
        self.head_dim = width // heads
        self.to_q = nn.Linear(width, width)
        self.to_k = nn.Linear(width, width)
        self.to_v = nn.Linear(width, width)
        self.norm_k = nn.LayerNorm(self.head_dim)
        self.norm_v = nn.LayerNorm(self.head_dim)
        self.to_out = nn.Linear(width, width)
        self.ffn = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, width))

    def split(self, t: torch.Tensor) -> torch.Tensor:
        """``(B, N, width) -> (B, heads, N, head_dim)``."""
        return t.view(t.shape[0], t.shape[1], self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        q = self.split(self.to_q(x))
        k = self.norm_k(self.split(self.to_k(context)))
        v = self.norm_v(self.split(self.to_v(context)))
        summary = k.transpose(-1, -2) @ v / context.shape[1]  # (B, heads, d, d)
        attended = (q @ summary).transpose(1, 2).reshape(x.shape)
        x = x + self.to_out(attended)
        return x + self.ffn(x)


def to_tokens(fmap: torch.Tensor) -> torch.Tensor:
    """``(B, C, h, w) -> (B, h*w, C)``."""
    return fmap.flatten(2).transpose(1, 2)


class SRNO(nn.Module):
    """EDSR features + SRNO lifting, two Galerkin blocks over the LR field, projection.

    ``encode`` -> ``{"inp": (B,3,h,w), "feat": (B, n_feats, h, w), "field0", "field1":
    (B, width, h, w)}`` where ``field_l`` is the LR field that block ``l`` integrates over.
    ``query(features, coord, cell)`` -> ``(B, Q, 3)`` in [0, 1] space, unclamped.
    """

    def __init__(self, cfg: ModelConfig, rep_dim: int = 256):
        super().__init__()
        self.modulated = cfg.modulation
        self.encoder = EDSR(cfg.n_resblocks, cfg.n_feats, rep_dim if cfg.modulation else None,
                            cfg.modulation_slope)
        # 4 x (feature + relative coordinate) + 4 area weights + cell.
        self.lift = nn.Linear(4 * (cfg.n_feats + 2) + 4 + 2, cfg.width)
        self.lift_lr = nn.Conv2d(cfg.n_feats, cfg.width, 1)
        self.blocks = nn.ModuleList(GalerkinBlock(cfg.width) for _ in range(BLOCKS))
        self.project = nn.Linear(cfg.width, 3)

    @property
    def receptive_radius(self) -> None:
        """``None``: the Galerkin blocks integrate over the whole LR field, so every encoded pixel
        depends on the whole image and tiled encoding cannot reproduce an untiled pass."""
        return None

    def encode(self, lr: torch.Tensor, rep: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        inp = normalise(lr)
        feat = self.encoder(inp, rep if self.modulated else None)
        features = {"inp": inp, "feat": feat}
        field = self.lift_lr(feat)
        for index, block in enumerate(self.blocks):
            features[f"field{index}"] = field
            if index + 1 < len(self.blocks):  # the last block's output field is never read
                tokens = to_tokens(field)
                field = block(tokens, tokens).transpose(1, 2).reshape(field.shape)
        return features

    def query(self, features: dict[str, torch.Tensor], coord: torch.Tensor,
              cell: torch.Tensor, centred: bool = False) -> torch.Tensor:
        """``centred`` is accepted for a common signature and changes nothing: SRNO's attention
        over its 4 neighbours is not an area-weighted blend."""
        feat = features["feat"]
        batch, queries, _ = coord.shape
        height, width = feat.shape[-2:]
        (codes,), rel_coord, weights = gather_neighbours([feat], coord, local_ensemble=True)
        # codes (B, 4, Q, C), rel_coord (B, 4, Q, 2), weights (B, 4, Q) -> one vector per query.
        per_neighbour = torch.cat([codes, rel_coord], dim=-1).permute(0, 2, 1, 3)
        lifted = torch.cat([per_neighbour.reshape(batch, queries, -1), weights.transpose(1, 2),
                            cell_in_lr_pixels(cell, height, width)], dim=-1)
        u = self.lift(lifted)
        for index, block in enumerate(self.blocks):
            u = block(u, to_tokens(features[f"field{index}"]))
        out = self.project(u) + bilinear_sample(features["inp"], coord)
        return out * 0.5 + 0.5

    def forward(self, lr: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor,
                rep: torch.Tensor | None = None) -> torch.Tensor:
        return self.query(self.encode(lr, rep), coord, cell)
