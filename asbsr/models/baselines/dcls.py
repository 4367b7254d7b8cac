"""A DCLS-style deblurring step for the "DCLS + LIIF / LTE" baselines of Table 1.

DCLS (Luo et al., CVPR 2022) reformulates the degradation of Eq. 1 as an LR-space blur (Eq. 2 of
the paper, ``y = x_down (*) k_l``) and undoes it before super-resolving: it estimates ``k_l``,
deconvolves *deep features* of ``y`` with a least-squares filter built from dual-path
(DPCA-projected) kernels, and then a learned network restores the image.

**This module is a simplified stand-in, not DCLS.** It applies the closed-form Wiener filter to
the LR *image* itself, in the Fourier domain, with the kernel ``k_l`` estimated by our own
estimator M (or any other kernel):

    X_hat = conj(F(k_l)) . F(y) / ( |F(k_l)|^2 + noise_to_signal )

There is no feature-space deconvolution, no DPCA and no learned restorer; the ASSR module that
follows (LIIF or LTE) sees the deconvolved LR image in place of ``y``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kernel_spectrum(kernel: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``F(k)`` of ``(B, k, k)`` kernels embedded in a ``height x width`` circular grid.

    The kernel's centre tap goes to index ``(0, 0)``, so that multiplying spectra is the
    *true convolution* ``y[i] = sum_m k[m] x[i - (m - c)]`` that ``asbsr.degradation.blur``
    computes (``c = k // 2``): an off-centre tap at ``c + d`` moves the image by ``+d``.
    Returns the half spectrum ``(B, height, width // 2 + 1)`` (complex).
    """
    batch, size, _ = kernel.shape
    grid = kernel.new_zeros(batch, height, width)
    grid[:, :size, :size] = kernel
    grid = torch.roll(grid, shifts=(-(size // 2), -(size // 2)), dims=(-2, -1))
    return torch.fft.rfft2(grid)


def wiener_deconvolve(lr: torch.Tensor, kernel: torch.Tensor, noise_to_signal: float = 1e-2,
                      clamp: bool = True) -> torch.Tensor:
    """Undo the LR-space blur of Eq. 2, ``y = x_down (*) k_l``, by Wiener filtering.

    Args:
        lr: ``y``, ``(B, 3, h, w)`` in ``[0, 1]``.
        kernel: ``k_l``, ``(B, k, k)`` or ``(k, k)``, odd ``k``, in the convolution convention of
            ``asbsr.degradation.blur`` (a true convolution; the kernel need not be symmetric).
        noise_to_signal: the constant ``1 / SNR`` of the Wiener filter: larger values regularise
            more (less ringing, less sharpening). Must be positive.
        clamp: clip the result to ``[0, 1]`` (ringing overshoots; the SR module expects an image).

    Returns:
        ``x_hat``: ``(B, 3, h, w)``, an estimate of the blur-free ``x_down``.

    The Fourier transform treats the image as periodic, so its right edge would be deblurred as if
    it continued with the left edge. To keep that wrap-around away from the image, ``y`` is first
    padded by ``k`` pixels on every side (reflect, or edge replication for images smaller than
    ``k + 1``), filtered, and cropped back.
    """
    if lr.dim() != 4:
        raise ValueError(f"lr must be (B, C, h, w), got shape {tuple(lr.shape)}")
    if noise_to_signal <= 0:
        raise ValueError(f"noise_to_signal must be > 0, got {noise_to_signal}")
    batch, _, height, width = lr.shape
    if kernel.dim() == 2:
        kernel = kernel.expand(batch, *kernel.shape)
    size = kernel.shape[-1]
    if kernel.dim() != 3 or kernel.shape[-2] != size or size % 2 == 0 or kernel.shape[0] != batch:
        raise ValueError(f"kernel must be (B, k, k) or (k, k) with odd k and B = {batch}, "
                         f"got shape {tuple(kernel.shape)}")
    work = lr if lr.dtype in (torch.float32, torch.float64) else lr.float()
    pad = size
    mode = "reflect" if pad < min(height, width) else "replicate"
    padded = F.pad(work, (pad, pad, pad, pad), mode=mode)
    full_h, full_w = padded.shape[-2:]
    spectrum = kernel_spectrum(kernel.to(work.dtype), full_h, full_w).unsqueeze(1)  # (B,1,.,.)
    wiener = spectrum.conj() / (spectrum.abs() ** 2 + noise_to_signal)
    restored = torch.fft.irfft2(torch.fft.rfft2(padded) * wiener, s=(full_h, full_w))
    restored = restored[..., pad:pad + height, pad:pad + width]
    if clamp:
        restored = restored.clamp(0, 1)
    return restored.to(lr.dtype)
