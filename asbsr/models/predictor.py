"""Implicit degradation predictor E and its SimSiam heads (Section 3.1, Eq. 3).

E maps an LR patch to a vector that describes *how* the patch was degraded (blur, downsampler,
scale), not *what* it shows. Following the paper, E looks at the three high-frequency Haar
subbands of every RGB channel, ``y_H`` (9 channels at half resolution), because blur and
downsampling act mostly on high frequencies. The ``"rgb"`` variant feeds the RGB patch itself,
as DASR does, for the ablation.

E is trained with SimSiam (Eq. 3)::

    L_cl = 1/2 D(E(y1_H), G(E(y2_H))) + 1/2 D(E(y2_H), G(E(y1_H)))

with D the negative cosine similarity and a stop-gradient on the un-predicted branch. In SimSiam's
terms, the ``E`` of Eq. 3 is the encoder followed by a projector (``z``), and ``G`` is the
predictor (``p``). The representation used downstream (by M and by the SR module) is the
encoder's output ``r``, before the projector.
"""

from __future__ import annotations

import torch
from torch import nn

from asbsr.wavelet import haar_high_bands

NORMALISE_EPS = 0.01  # keeps a flat patch (standard deviation ~0) from blowing up


def _conv_bn_act(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1),
        nn.BatchNorm2d(out_channels),
        nn.LeakyReLU(0.1, inplace=True),
    )


class DegradationEncoder(nn.Module):
    """Implicit degradation predictor E: LR patch ``(B, 3, h, w)`` in [0, 1] -> ``(B, dim)``.

    Six 3x3 convolutions, each followed by BatchNorm and LeakyReLU(0.1), then global average
    pooling. At ``dim=256`` the widths are 64, 64, 128 (stride 2), 128, 256 (stride 2), 256; for
    another ``dim`` they scale as dim/4, dim/4, dim/2, dim/2, dim, dim.

    Inputs:
        * ``input="haar"`` (the paper): ``haar_high_bands(lr)`` -> ``(B, 9, h/2, w/2)``, the LH, HL,
          HH bands of each RGB channel. The bands are differences of pixels, hence already
          centred on 0, and are fed as they are.
        * ``input="rgb"`` (DASR-style): the RGB patch normalised as ``(lr - 0.5) / 0.5``, the same
          normalisation as the SR module.

    Either way a BatchNorm follows the first convolution, so an affine rescaling of the input
    changes nothing but BatchNorm's epsilon; the normalisation is for readability, not accuracy.

    ``normalise=True`` (a deviation from the paper, see ``EncoderConfig.normalise``) divides the
    input of each patch by the standard deviation of its RGB pixels (+ 0.01): the bands then
    measure how much of the patch's own contrast lies in its finest details -- what blur takes
    away -- instead of how much contrast the photo has. Per patch, so ``forward_tiled`` (which
    cuts one image into blocks) divides the whole image by its own standard deviation, as the
    whole-image pass does.
    """

    def __init__(self, input: str = "haar", dim: int = 256, normalise: bool = False):
        super().__init__()
        if input not in ("haar", "rgb"):
            raise ValueError(f"input must be 'haar' or 'rgb', got {input!r}")
        if dim < 4 or dim % 4:
            raise ValueError(f"dim must be a positive multiple of 4, got {dim}")
        self.input = input
        self.dim = dim
        self.normalise = normalise
        in_channels = 9 if input == "haar" else 3
        widths = (dim // 4, dim // 4, dim // 2, dim // 2, dim, dim)
        strides = (1, 1, 2, 1, 2, 1)
        layers = []
        for width, stride in zip(widths, strides):
            layers.append(_conv_bn_act(in_channels, width, stride))
            in_channels = width
        self.body = nn.Sequential(*layers)

    def prepare(self, lr: torch.Tensor) -> torch.Tensor:
        """The network's input for an LR batch: the 9 Haar high bands, or the normalised RGB
        (channels-last)."""
        if lr.dim() != 4 or lr.shape[1] != 3:
            raise ValueError(f"expected an RGB batch (B, 3, h, w), got shape {tuple(lr.shape)}")
        if self.input == "haar":
            bands = haar_high_bands(lr)
        else:
            bands = (lr - 0.5) / 0.5
        if self.normalise:
            bands = bands / (lr.std(dim=(1, 2, 3), keepdim=True) + NORMALISE_EPS)
        # Channels-last: the same values; oneDNN's convolutions run E's body (and its backward)
        # faster in this layout (benchmarks/RESULTS.md).
        return bands.contiguous(memory_format=torch.channels_last)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        """``lr``: ``(B, 3, h, w)`` in [0, 1] -> representation ``r``: ``(B, dim)``."""
        return self.body(self.prepare(lr)).mean(dim=(2, 3))

    def reach(self) -> tuple[int, int]:
        """``(radius, stride)`` of the body, in pixels of the prepared input: an output pixel
        ``j`` reads the input within ``radius`` of ``stride * j``."""
        radius, stride = 0, 1
        for layer in self.body:
            conv = layer[0]
            radius += (conv.kernel_size[0] // 2) * stride
            stride *= conv.stride[0]
        return radius, stride

    def forward_tiled(self, lr: torch.Tensor, tile: int = 256) -> torch.Tensor:
        """``forward(lr)`` computed block by block, for images too large for one pass.

        The body's output is summed block by block and divided by its size at the end; each
        block is cut from the prepared input with enough context (``reach``) that its part of the
        output equals the whole-image pass, and starts on a multiple of the body's stride, so the
        result equals ``forward`` up to float summation order. Memory: the prepared input plus
        one block's activations (the whole-image pass holds ``dim / 4`` channels at the prepared
        resolution: about 2 GB at ``dim=256`` for a 12-megapixel input). Eval mode only:
        BatchNorm's batch statistics in training mode would differ between blocks.
        """
        if self.training:
            raise RuntimeError("forward_tiled needs eval mode (BatchNorm with running statistics)")
        radius, stride = self.reach()
        tile = max(stride, tile // stride * stride)
        halo = -(-(radius + stride) // stride) * stride  # a multiple of the stride, > radius
        x = self.prepare(lr)
        height, width = x.shape[-2:]
        total, count = x.new_zeros(x.shape[0], self.dim), 0
        for top in range(0, height, tile):
            for left in range(0, width, tile):
                y0, x0 = max(top - halo, 0), max(left - halo, 0)
                y1, x1 = min(top + tile + halo, height), min(left + tile + halo, width)
                features = self.body(x[..., y0:y1, x0:x1])
                # output rows / columns owned by this block, in the crop's output grid
                r0, r1 = (top - y0) // stride, -(-min(top + tile, height) // stride) - y0 // stride
                c0, c1 = (left - x0) // stride, -(-min(left + tile, width) // stride) - x0 // stride
                total += features[..., r0:r1, c0:c1].sum(dim=(2, 3))
                count += (r1 - r0) * (c1 - c0)  # the blocks own every output pixel exactly once
        return total / count


class SimSiam(nn.Module):
    """SimSiam around an encoder (Eq. 3): projector (z) and predictor G (p).

    * projector: ``dim -> dim -> dim -> dim``, BatchNorm + ReLU after the first two linear layers
      and a BatchNorm without affine parameters after the last, as in SimSiam.
    * predictor G: ``dim -> pred_hidden (BatchNorm, ReLU) -> dim``.

    ``forward(x1, x2)`` returns ``(p1, p2, z1.detach(), z2.detach(), r1, r2)``: the stop-gradient
    of Eq. 3 is applied here, so ``simsiam_loss(p1, p2, z1, z2)`` can only push gradients through
    the predicted branch. ``r1, r2`` are the encoder outputs, kept attached for the kernel
    estimator M, whose loss L_k also trains E.

    ``projector_bias``: whether the projector's last Linear has a bias. The authors' has none (a
    BatchNorm follows, so a bias changes nothing but the parameter count); the shipped stage-1
    runs have one (``encoder.projector_bias``, True until they are retrained).

    Note: the authors' released code never passed the projector's parameters to the optimizer
    (a defect). Here the projector is an ordinary submodule, so ``simsiam.parameters()`` trains it.
    """

    def __init__(self, encoder: nn.Module, dim: int = 256, pred_hidden: int = 512,
                 projector_bias: bool = False):
        super().__init__()
        self.encoder = encoder
        self.projector = nn.Sequential(
            nn.Linear(dim, dim, bias=False), nn.BatchNorm1d(dim), nn.ReLU(inplace=True),
            nn.Linear(dim, dim, bias=False), nn.BatchNorm1d(dim), nn.ReLU(inplace=True),
            nn.Linear(dim, dim, bias=projector_bias), nn.BatchNorm1d(dim, affine=False),
        )
        self.predictor = nn.Sequential(
            nn.Linear(dim, pred_hidden, bias=False), nn.BatchNorm1d(pred_hidden),
            nn.ReLU(inplace=True), nn.Linear(pred_hidden, dim),
        )

    def forward(self, x1: torch.Tensor, x2: torch.Tensor):
        """Two views ``(B, 3, h, w)`` with the same degradation -> ``(p1, p2, z1, z2, r1, r2)``,
        each ``(B, dim)``; ``z1, z2`` are detached (stop-gradient)."""
        # Each view goes through the encoder on its own, so BatchNorm statistics are per view.
        r1, r2 = self.encoder(x1), self.encoder(x2)
        z1, z2 = self.projector(r1), self.projector(r2)
        p1, p2 = self.predictor(z1), self.predictor(z2)
        return p1, p2, z1.detach(), z2.detach(), r1, r2
