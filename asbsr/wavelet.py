"""One-level 2-D Haar wavelet transform (Section 3.1) as a fixed stride-2 convolution.

The implicit degradation predictor E reads the high-frequency subbands ``y_H`` of the LR patch:
"the Haar transform is adopted as the wavelet basis ... [we] take the high-frequency subbands
y_H as the input". Each non-overlapping 2x2 block ``[[a, b], [c, d]]`` of a channel gives

    LL = (a + b + c + d) / 2      low-pass both ways (y_L)
    LH = (a + b - c - d) / 2      high-pass along the height: horizontal edges
    HL = (a - b + c - d) / 2      high-pass along the width: vertical edges
    HH = (a - b - c + d) / 2      diagonal detail

which equals ``pywt.dwt2(x, 'haar')`` as ``(LL, (LH, HL, HH)) = (cA, (cH, cV, cD))`` -- same
signs. The four filters are orthonormal, so the inverse is the transposed convolution.

Odd heights/widths: the last row/column is reflected (``x[n] = x[n - 2]``), i.e. pywt's
``mode='reflect'``, before the transform; ``haar_idwt(..., size=(H, W))`` crops it away again.
Everything is differentiable and runs on the device and dtype of the input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _filters(channels: int, like: torch.Tensor) -> torch.Tensor:
    """The LL, LH, HL, HH 2x2 filters repeated per channel: ``(4 * channels, 1, 2, 2)``."""
    bank = torch.tensor(
        [[[1, 1], [1, 1]], [[1, 1], [-1, -1]], [[1, -1], [1, -1]], [[1, -1], [-1, 1]]],
        dtype=like.dtype, device=like.device,
    ) / 2
    return bank.unsqueeze(1).repeat(channels, 1, 1, 1)


def haar_dwt(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, C, H, W) -> (low (B, C, H', W'), high (B, 3C, H', W'))``, ``H' = ceil(H / 2)``.

    ``high`` holds, for each channel ``c`` in turn, its three bands ``[LH, HL, HH]``: channels
    ``3c, 3c + 1, 3c + 2``. For an RGB patch that is the 9-channel input of E.
    """
    if x.ndim != 4:
        raise ValueError(f"haar_dwt needs a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
    batch, channels, height, width = x.shape
    if height < 2 or width < 2:
        raise ValueError(f"haar_dwt needs at least 2x2 pixels, got {height}x{width}")
    if height % 2 or width % 2:
        x = F.pad(x, (0, width % 2, 0, height % 2), mode="reflect")
    bands = F.conv2d(x, _filters(channels, x), stride=2, groups=channels)
    bands = bands.view(batch, channels, 4, *bands.shape[-2:])
    low = bands[:, :, 0]
    high = bands[:, :, 1:].reshape(batch, 3 * channels, *bands.shape[-2:])
    return low, high


def haar_idwt(low: torch.Tensor, high: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Inverse of ``haar_dwt``: ``(B, C, h, w), (B, 3C, h, w) -> (B, C, 2h, 2w)``.

    Exact (to rounding) for even sizes. For an odd original size pass ``size=(H, W)`` to drop
    the reflected row/column.
    """
    batch, channels, height, width = low.shape
    if high.shape != (batch, 3 * channels, height, width):
        raise ValueError(f"high must be (B, 3C, h, w) = {(batch, 3 * channels, height, width)}, "
                         f"got {tuple(high.shape)}")
    bands = torch.cat([low.unsqueeze(2), high.view(batch, channels, 3, height, width)], dim=2)
    bands = bands.reshape(batch, 4 * channels, height, width)
    x = F.conv_transpose2d(bands, _filters(channels, bands), stride=2, groups=channels)
    if size is not None:
        x = x[..., : size[0], : size[1]]
    return x


def haar_high_bands(x: torch.Tensor) -> torch.Tensor:
    """The high-frequency subbands ``y_H`` of Section 3.1: ``(B, C, H, W) -> (B, 3C, H', W')``."""
    return haar_dwt(x)[1]
