"""Explicit kernel estimator M (Section 3.2): representation -> LR-space kernel k̂_l.

M turns E's implicit representation into an explicit blur kernel in LR space, the ``k_l`` of
Eq. 2 (``y = x↓s ⊗ k_l``), by *degradation-dependent deep linear convolution* (DCLS's name): a
small MLP predicts four filters of sizes 11, 7, 5 and 1, and the kernel is their composition.
Composing linear filters keeps the estimate linear in each filter, which DCLS found easier to
train than predicting 441 numbers directly.

Orientation. F.conv2d computes a cross-correlation. Cross-correlating a centred delta with the
four filters in turn gives the *flipped* full convolution ``flip(w1 * w2 * w3 * w4)``; flipping
once more leaves ``k̂ = (w1 * w2 * w3 * w4) / sum``, the filters' true convolution. So
``asbsr.degradation.blur(x, k̂)`` (a true convolution) blurs by the four filters in turn.
Either way k̂ is learned by L1 against the ``k_l`` of Eq. 4, whose array layout is the one
``blur`` uses, so the pair ``(k̂, blur)`` is consistent by construction.

Sign. The division by the sum makes k̂ sum to 1, but a deep linear kernel is not constrained to
be non-negative, and the sum (the product of the four filters' sums) could approach 0; training
against non-negative targets keeps it away from there in practice.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FILTER_SIZES = (11, 7, 5, 1)


class KernelEstimator(nn.Module):
    """M: ``rep (B, dim) -> k̂_l (B, size, size)`` summing to 1.

    MLP ``dim -> 64 (ReLU) -> 16``; four linear heads ``16 -> f^2`` for ``f = 11, 7, 5, 1``, each
    a 1-to-1 convolution filter. A delta of side ``size + 20`` (41 for size 21) is convolved
    (valid, no padding) with the four filters in turn: 41 -> 31 -> 25 -> 21 -> 21, then flipped
    and divided by its sum.

    Deviation (initialisation): each head starts near a centred delta filter (bias = the delta,
    weights scaled by 0.01), so the initial k̂_l is close to a delta. With PyTorch's default
    initialisation the composition of four random filters is a broad, noisy kernel that the
    small ``smoke``/``cpu`` budgets never leave: re-blurring ``x↓s`` with it scored 28 dB against
    y, worse than no blur at all (37.6 dB); with this start it reached 41 dB (true k_l: 41.3).
    """

    def __init__(self, dim: int = 256, size: int = 21):
        super().__init__()
        if size < 1 or size % 2 == 0:
            raise ValueError(f"size must be a positive odd integer, got {size}")
        self.size = size
        self.mlp = nn.Sequential(nn.Linear(dim, 64), nn.ReLU(inplace=True), nn.Linear(64, 16))
        self.heads = nn.ModuleList(nn.Linear(16, f * f) for f in FILTER_SIZES)
        with torch.no_grad():
            for head, f in zip(self.heads, FILTER_SIZES):
                head.weight.mul_(0.01)
                head.bias.zero_()
                head.bias[(f * f) // 2] = 1.0  # the centre tap of a flattened f x f filter

    def filters(self, rep: torch.Tensor) -> list[torch.Tensor]:
        """The four per-sample filters, ``(B, f, f)`` for ``f = 11, 7, 5, 1``."""
        hidden = self.mlp(rep)
        return [head(hidden).view(-1, f, f) for head, f in zip(self.heads, FILTER_SIZES)]

    def forward(self, rep: torch.Tensor) -> torch.Tensor:
        """``rep``: ``(B, dim)`` -> ``k̂_l``: ``(B, size, size)``, each summing to 1."""
        batch = rep.shape[0]
        side = self.size + sum(f - 1 for f in FILTER_SIZES)
        delta = rep.new_zeros(1, batch, side, side)
        delta[..., side // 2, side // 2] = 1.0
        kernel = delta
        for filt in self.filters(rep):
            # One group per sample: each image of the batch is convolved with its own filter.
            kernel = F.conv2d(kernel, filt.unsqueeze(1), groups=batch)
        kernel = kernel[0].flip(-2, -1)
        return kernel / kernel.sum(dim=(-2, -1), keepdim=True)
