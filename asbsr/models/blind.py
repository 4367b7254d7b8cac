"""The whole arbitrary-scale blind SR model at inference: implicit predictor E + SR module.

Section 3.5: "During inference, we only require the implicit degradation predictor and the
arbitrary-scale super-resolution module". The explicit kernel estimator M is kept only for the
DCLS-style baselines, which deconvolve the LR input with M's kernel before super-resolving it.
"""

from __future__ import annotations

import torch
from torch import nn

from asbsr.models.baselines.dcls import wiener_deconvolve
from asbsr.models.kernel_estimator import KernelEstimator
from asbsr.models.predictor import DegradationEncoder


class BlindSR(nn.Module):
    """E (frozen, eval mode) followed by an arbitrary-scale head that may be modulated by E.

    ``prepare(lr)`` does the whole-image work once -- E's representation and, for the DCLS-style
    baselines, the LR-space deconvolution -- so that tiled encoding and chunked queries see the
    same global representation as an untiled pass. Whole-image SR of any size is
    ``asbsr.inference.upscale(model, lr, scale)`` (or ``asbsr.tiling.upscale_tiled``).
    """

    def __init__(self, encoder: DegradationEncoder, sr: nn.Module,
                 estimator: KernelEstimator | None = None, deblur: bool = False,
                 max_scale: float | None = None):
        super().__init__()
        # The largest scale it was trained on: whole-image inference (``asbsr.inference``)
        # clips the query cell beyond it, LTE's test-time rule. None: no clipping.
        self.max_scale = max_scale
        self.encoder = encoder
        self.sr = sr
        self.estimator = estimator
        self.deblur = deblur
        if deblur and estimator is None:
            raise ValueError("deblur needs the kernel estimator M")
        for frozen in (encoder, estimator):
            if frozen is not None:
                frozen.requires_grad_(False)

    def train(self, mode: bool = True) -> "BlindSR":
        # E and M stay in eval mode even while the SR module trains: their BatchNorm statistics
        # were learned in stage 1 (the authors' release left them in train mode, a defect).
        super().train(mode)
        self.encoder.eval()
        if self.estimator is not None:
            self.estimator.eval()
        return self

    @property
    def modulated(self) -> bool:
        return bool(getattr(self.sr, "modulated", False))

    def representation(self, lr: torch.Tensor, tile: int | None = None) -> torch.Tensor:
        """E's implicit degradation representation of ``lr`` ``(B, 3, h, w)``: ``(B, dim)``;
        with ``tile``, computed block by block (``DegradationEncoder.forward_tiled``, exact)."""
        with torch.no_grad():
            return self.encoder.forward_tiled(lr, tile) if tile else self.encoder(lr)

    def prepare(self, lr: torch.Tensor, rep: torch.Tensor | None = None, tile: int | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The SR module's input and condition: ``(lr or its deconvolution, representation)``.

        ``rep`` may be passed when the caller already ran E on ``lr``; ``tile`` runs E block by
        block (bounded memory for large images).
        """
        if rep is None and (self.modulated or self.deblur):
            rep = self.representation(lr, tile)
        if self.deblur:
            with torch.no_grad():
                lr = wiener_deconvolve(lr, self.estimator(rep))
        return lr, rep

    @property
    def receptive_radius(self) -> int | None:
        """The SR module's: LR pixels of context its encoding needs per side (``None``: the
        whole image, as for SRNO's attention)."""
        return getattr(self.sr, "receptive_radius", None)

    def encode_prepared(self, prepared: torch.Tensor, rep: torch.Tensor | None) -> dict:
        """The SR module's feature maps of an input already through ``prepare`` (or of a crop of
        it: whole-image inference prepares once and may encode block by block)."""
        return self.sr.encode(prepared, rep)

    def encode(self, lr: torch.Tensor, rep: torch.Tensor | None = None) -> dict:
        prepared, rep = self.prepare(lr, rep)
        return self.encode_prepared(prepared, rep)

    def query(self, features: dict, coord: torch.Tensor, cell: torch.Tensor,
              centred: bool = False) -> torch.Tensor:
        """The SR module's query; ``centred``: all queries lie on LR pixel centres."""
        return self.sr.query(features, coord, cell, centred=centred)

    def forward(self, lr: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        return self.query(self.encode(lr), coord, cell)
