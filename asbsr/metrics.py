"""PSNR and SSIM on the Y channel (Section 4, "Performance Evaluation"), MATLAB-compatible.

The protocol, in order:

1. RGB in ``[0, 1]`` is quantised to 8 bits (``quantize``), as if the SR output were saved;
2. ``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` with RGB in ``[0, 1]`` (ITU-R BT.601 as
   MATLAB's ``rgb2ycbcr``); Y stays a float in ``[16, 235]``;
3. ``shave`` pixels are removed from each border (``shave_for(s) = ceil(s)``);
4. ``skimage.metrics.peak_signal_noise_ratio(hr_y, sr_y, data_range=255)`` and
   ``structural_similarity(..., data_range=255, gaussian_weights=True, sigma=1.5,
   use_sample_covariance=False)``, which equals MATLAB's ``ssim`` (scikit-image's defaults
   do not).

The HR image of an ``x s`` benchmark is first cropped with ``crop_hr_to_lr_grid`` so that it
covers a whole number of LR pixels.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from asbsr.degradation import check_scale

# SSIM's Gaussian window for sigma 1.5 (scikit-image truncates at 3.5 sigma): 11 x 11 pixels.
SSIM_WINDOW = 11


def quantize(image: torch.Tensor) -> torch.Tensor:
    """Round ``[0, 1]`` values to the 256 levels of an 8-bit image (halves round up, as
    MATLAB's ``im2uint8``); the result is still a float in ``[0, 1]``. Out-of-range values clamp."""
    return torch.floor(image.clamp(0, 1) * 255 + 0.5) / 255


def rgb_to_y(image: torch.Tensor) -> torch.Tensor:
    """Luma of MATLAB's ``rgb2ycbcr``: ``(..., 3, H, W)`` in ``[0, 1]`` -> ``(..., H, W)`` in
    ``[16, 235]``: ``Y = 16 + 65.481 R + 128.553 G + 24.966 B``."""
    if image.ndim < 3 or image.shape[-3] != 3:
        raise ValueError(f"rgb_to_y needs (..., 3, H, W), got {tuple(image.shape)}")
    r, g, b = image.unbind(dim=-3)
    return 16.0 + 65.481 * r + 128.553 * g + 24.966 * b


def _y_for_metric(
    sr: torch.Tensor, hr: torch.Tensor, shave: int, min_side: int
) -> tuple[np.ndarray, np.ndarray]:
    """Quantised, shaved float64 Y planes of two ``(3, H, W)`` (or ``(1, 3, H, W)``) images."""
    if tuple(sr.shape) != tuple(hr.shape):
        raise ValueError(f"sr {tuple(sr.shape)} and hr {tuple(hr.shape)} must have the same shape")
    if sr.ndim == 4 and sr.shape[0] == 1:
        sr, hr = sr[0], hr[0]
    if sr.ndim != 3 or sr.shape[0] != 3:
        raise ValueError(f"images must be (3, H, W) or (1, 3, H, W), got {tuple(sr.shape)}")
    if isinstance(shave, bool) or not isinstance(shave, numbers.Integral) or shave < 0:
        raise ValueError(f"shave must be an integer >= 0, got {shave!r}")
    height, width = sr.shape[-2:]
    if min(height, width) - 2 * shave < min_side:
        raise ValueError(f"a {height}x{width} image shaved by {shave} leaves less than "
                         f"{min_side}x{min_side} pixels")
    planes = []
    for image in (sr, hr):
        y = rgb_to_y(quantize(image.detach().to("cpu", torch.float64)))
        planes.append(y[shave:height - shave, shave:width - shave].numpy())
    return planes[0], planes[1]


def psnr_y(sr: torch.Tensor, hr: torch.Tensor, shave: int = 0) -> float:
    """PSNR (dB) between the Y channels of ``sr`` and ``hr``, ``(3, H, W)`` in ``[0, 1]``;
    ``inf`` when the quantised images are identical."""
    sr_y, hr_y = _y_for_metric(sr, hr, shave, 1)
    if np.array_equal(sr_y, hr_y):
        return math.inf
    return float(peak_signal_noise_ratio(hr_y, sr_y, data_range=255))


def ssim_y(sr: torch.Tensor, hr: torch.Tensor, shave: int = 0) -> float:
    """MATLAB-compatible SSIM between the Y channels of ``sr`` and ``hr`` (``(3, H, W)`` in
    ``[0, 1]``); needs at least 11x11 pixels after shaving."""
    sr_y, hr_y = _y_for_metric(sr, hr, shave, SSIM_WINDOW)
    return float(structural_similarity(hr_y, sr_y, data_range=255, gaussian_weights=True,
                                       sigma=1.5, use_sample_covariance=False))


def shave_for(scale: float) -> int:
    """Border pixels to ignore at scale ``s``: ``ceil(s)`` (LTE/DASR shave ``s``)."""
    return math.ceil(check_scale(scale))


def crop_hr_to_lr_grid(hr: torch.Tensor, scale: float) -> torch.Tensor:
    """Crop ``hr`` ``(..., H, W)`` (top-left) to a whole number of LR pixels at scale ``s``.

    The LR size is ``h = round(H / s)`` and the HR target of an ``x s`` query of it is
    ``round(h * s)``. When that exceeds ``H`` (e.g. ``H = 7, s = 4``: ``h = 2``, ``8 > 7``),
    ``h`` is lowered by one until it fits; for ``s >= 1``, ``lr_size`` of the crop is then ``h``.
    """
    scale = check_scale(scale)
    if hr.ndim < 2:
        raise ValueError(f"hr must be (..., H, W), got {tuple(hr.shape)}")
    sides = []
    for side in hr.shape[-2:]:
        lr_side = round(side / scale)
        while lr_side > 0 and round(lr_side * scale) > side:
            lr_side -= 1
        if lr_side < 1:
            raise ValueError(f"a side of {side} pixels has no whole LR pixel at scale {scale}")
        sides.append(round(lr_side * scale))
    return hr[..., : sides[0], : sides[1]]
