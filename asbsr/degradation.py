"""The degradation model of Section 3 (Eq. 1, 2, 4): kernels, resizing, blurring, k_l.

Eq. (1)  ``y = (x ⊗ k_h)↓s + n``   -- blur the HR image, then downsample (``degrade``).
Eq. (2)  ``y = x↓s ⊗ k_l``         -- the same LR image as a blur *in LR space*.
Eq. (4)  ``k_l = F⁻¹( conj(F(x↓s)) F(y) / (conj(F(x↓s)) F(x↓s) + ε) )``  (``lr_space_kernel``).

Conventions used by every function here (and by anything that blurs with a predicted kernel):

* ``⊗`` is a *true* convolution, ``y[i] = Σ_m k[c + m] · x[i - m]`` with ``c`` the centre index:
  the kernel is flipped relative to ``F.conv2d`` (a cross-correlation). Gaussian kernels are
  symmetric under a 180° turn, so for ``k_h`` the two agree; for an estimated ``k_l`` they do not.
* Images are ``(B, 3, H, W)`` floats in ``[0, 1]``; kernels are ``(k, k)`` or ``(B, k, k)`` with an
  odd ``k`` and sum to 1.
* Sizes: the LR image of an ``H x W`` HR image at scale ``s`` is ``round(H / s) x round(W / s)``
  (Python's ``round``, ties to even).

The random samplers of Section 4 live in ``asbsr.sampling``.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F

MODES = ("bicubic", "bilinear", "area")
PADDINGS = ("reflect", "circular", "replicate", "zeros")


def gaussian_kernel(size: int, lambda1: float, lambda2: float, theta: float) -> torch.Tensor:
    """Anisotropic Gaussian blur kernel ``k_h`` of Section 4: ``(size, size)`` float32, sum 1.

    ``k(d) ∝ exp(-½ dᵀ Σ⁻¹ d)`` on the integer grid ``d = (x, y)`` centred on the middle pixel,
    ``x`` = column offset, ``y`` = row offset (rows grow downwards), with

        Σ = R(θ) diag(λ1², λ2²) R(θ)ᵀ,   R(θ) = [[cos θ, -sin θ], [sin θ, cos θ]].

    So ``lambda1`` and ``lambda2`` are *standard deviations* in pixels (DASR's convention). The
    paper's words ("two random eigenvalues λ1, λ2 ~ U(0.2, 4) in a covariance matrix") would make
    them variances, Σ = R diag(λ1, λ2) Rᵀ, i.e. standard deviations √λ; asbsr does not use that
    reading. ``theta`` (radians) turns the λ1 axis from the +x (column) axis towards +y (down):
    drawn with row 0 on top, as ``imshow`` does, positive θ turns it *clockwise*, and θ = π/4 with
    λ1 > λ2 stretches the kernel along the top-left-to-bottom-right diagonal.
    """
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1 or size % 2 == 0:
        raise ValueError(f"kernel size must be an odd positive integer, got {size!r}")
    for name, value in (("lambda1", lambda1), ("lambda2", lambda2)):
        if not (isinstance(value, numbers.Real) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite positive standard deviation, got {value!r}")
    if not (isinstance(theta, numbers.Real) and math.isfinite(theta)):
        raise ValueError(f"theta must be a finite angle in radians, got {theta!r}")
    offsets = torch.arange(size, dtype=torch.float64) - size // 2
    y, x = torch.meshgrid(offsets, offsets, indexing="ij")
    # Coordinates along the two principal axes: u = Rᵀ d.
    u = x * math.cos(theta) + y * math.sin(theta)
    v = -x * math.sin(theta) + y * math.cos(theta)
    kernel = torch.exp(-0.5 * ((u / lambda1) ** 2 + (v / lambda2) ** 2))
    return (kernel / kernel.sum()).float()


def check_scale(scale: Any) -> float:
    """``scale`` as a float; ``ValueError`` unless it is a finite real number > 0."""
    if isinstance(scale, torch.Tensor) and scale.numel() == 1:
        scale = scale.item()
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real):
        raise ValueError(f"scale must be a number, got {scale!r} ({type(scale).__name__})")
    scale = float(scale)
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be finite and > 0, got {scale!r}")
    return scale


def lr_size(hr_size: tuple[int, int], scale: float) -> tuple[int, int]:
    """LR size of an ``(H, W)`` image downscaled by ``scale``: ``(round(H / s), round(W / s))``."""
    scale = check_scale(scale)
    height, width = (int(v) for v in hr_size)
    size = (round(height / scale), round(width / scale))
    if min(size) < 1:
        raise ValueError(f"scale {scale} leaves no pixel of a {height}x{width} image")
    return size


def _check_images(x: torch.Tensor, name: str = "image") -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a (B, 3, H, W) tensor, got {shape} "
                         "(add a batch dimension with x[None])")
    if x.shape[1] != 3:
        raise ValueError(f"{name} must have 3 (RGB) channels, got shape {tuple(x.shape)}")


def resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """The downsampler ``↓s``: ``(B, C, H, W) -> (B, C, h, w)``, values not clamped.

    ``bicubic`` / ``bilinear``: antialiased ``F.interpolate`` (equal to PIL's resize to ~1e-5;
    without antialiasing a downscale aliases). ``area``: adaptive average pooling, a box filter
    only at integer factors. The target size is always given explicitly, never a scale factor,
    so that ``h, w`` are exactly the rounded sizes of ``lr_size``.
    """
    if mode not in MODES:
        raise ValueError(f"unknown resize mode {mode!r}; valid modes: {', '.join(MODES)}")
    if x.ndim != 4:
        raise ValueError(f"resize needs a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
    size = tuple(int(v) for v in size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"size must be two positive integers (h, w), got {size!r}")
    if mode == "area":
        return F.interpolate(x, size=size, mode="area")
    return F.interpolate(x, size=size, mode=mode, align_corners=False, antialias=True)


def _check_kernels(kernels: torch.Tensor, batch: int) -> torch.Tensor:
    """Validate ``(k, k)`` / ``(B, k, k)`` kernels and return them as ``(B or 1, k, k)``."""
    if kernels.ndim == 2:
        kernels = kernels.unsqueeze(0)
    if kernels.ndim != 3 or kernels.shape[-1] != kernels.shape[-2] or kernels.shape[-1] % 2 == 0:
        raise ValueError("kernels must be odd and square, (k, k) or (B, k, k); "
                         f"got {tuple(kernels.shape)}")
    if kernels.shape[0] not in (1, batch):
        raise ValueError(f"{kernels.shape[0]} kernels for a batch of {batch} images")
    return kernels


def blur(x: torch.Tensor, kernels: torch.Tensor, padding: str = "reflect") -> torch.Tensor:
    """``x ⊗ k``, a per-sample depthwise *true* convolution: ``(B, C, H, W) -> (B, C, H, W)``.

    ``kernels``: one ``(k, k)`` kernel for all images or ``(B, k, k)``, one per image, applied to
    every channel. The border is extended by ``k // 2`` pixels with ``padding`` (``reflect``,
    ``circular``, ``replicate`` or ``zeros``); the kernel may not be larger than the image.
    All samples run in one grouped convolution over a ``(1, B*C, H, W)`` view.
    """
    if padding not in PADDINGS:
        raise ValueError(f"unknown padding {padding!r}; valid: {', '.join(PADDINGS)}")
    if x.ndim != 4:
        raise ValueError(f"blur needs a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
    batch, channels, height, width = x.shape
    kernels = _check_kernels(kernels, batch).to(dtype=x.dtype, device=x.device)
    size = kernels.shape[-1]
    if size > height or size > width:
        raise ValueError(f"kernel {size}x{size} is larger than the {height}x{width} image")
    # F.conv2d correlates; flipping the kernel makes it the convolution of Eq. (1).
    weight = kernels.flip(-2, -1).expand(batch, size, size)
    weight = weight.repeat_interleave(channels, dim=0).unsqueeze(1)  # (B*C, 1, k, k)
    pad = size // 2
    flat = x.reshape(1, batch * channels, height, width)
    if padding == "zeros":
        flat = F.pad(flat, (pad, pad, pad, pad))
    else:
        flat = F.pad(flat, (pad, pad, pad, pad), mode=padding)
    return F.conv2d(flat, weight, groups=batch * channels).view(batch, channels, height, width)


def degrade(
    hr: torch.Tensor,
    kernel: torch.Tensor,
    scale: float,
    mode: str,
    noise_sigma: float = 0.0,
    generator: torch.Generator | None = None,
    size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Eq. (1): ``y = (x ⊗ k_h)↓s + n``, clamped to ``[0, 1]``.

    Args:
        hr: ``x``, ``(B, 3, H, W)`` in ``[0, 1]``.
        kernel: ``k_h``, ``(k, k)`` or ``(B, k, k)``; reflect-padded true convolution (``blur``).
        scale: ``s`` > 0; the output is ``lr_size((H, W), s)`` unless ``size`` is given.
        mode: the downsampler ``↓s``: ``bicubic``, ``bilinear`` or ``area`` (``resize``).
        noise_sigma: std of the white Gaussian noise ``n`` (the paper's experiments use 0).
        generator: draws the noise (it may live on another device than ``hr``).
        size: ``(h, w)`` to force the LR size, e.g. so that a patch is exactly ``p x p``.

    Returns ``y``: ``(B, 3, h, w)``. It is clamped to ``[0, 1]`` because the paper's LR images are
    stored as 8-bit images (bicubic overshoots otherwise); it is *not* quantised to 256 levels.
    """
    _check_images(hr, "hr")
    scale = check_scale(scale)
    if mode not in MODES:
        raise ValueError(f"unknown downsampler {mode!r}; valid modes: {', '.join(MODES)}")
    kernels = _check_kernels(kernel, hr.shape[0])
    height, width = hr.shape[-2:]
    if kernels.shape[-1] > min(height, width):
        k = kernels.shape[-1]
        raise ValueError(f"kernel {k}x{k} is larger than the {height}x{width} HR image")
    if not (isinstance(noise_sigma, numbers.Real) and math.isfinite(noise_sigma) and noise_sigma >= 0):
        raise ValueError(f"noise_sigma must be finite and >= 0, got {noise_sigma!r}")
    size = lr_size((height, width), scale) if size is None else tuple(int(v) for v in size)
    y = resize(blur(hr, kernels), size, mode)
    if noise_sigma > 0:
        device = generator.device if generator is not None else y.device
        noise = torch.randn(y.shape, generator=generator, device=device, dtype=y.dtype)
        y = y + noise_sigma * noise.to(y.device)
    return y.clamp(0.0, 1.0)


def _centred_window(kernels: torch.Tensor, size: int) -> torch.Tensor:
    """Cut the ``size x size`` window around offset 0 out of circular ``(..., h, w)`` kernels.

    Offset ``m`` sits at index ``m mod n`` (FFT layout); the result puts offset 0 at the centre,
    like ``fftshift`` followed by a centred crop. Offsets that an ``n``-periodic kernel cannot
    represent (``n < size``) are zero, i.e. a small LR image gives a zero-padded kernel.
    """
    half = size // 2
    offsets = torch.arange(-half, half + 1, device=kernels.device)
    out = kernels
    for dim in (-2, -1):
        n = out.shape[dim]
        valid = (offsets >= -(n // 2)) & (offsets <= n - 1 - n // 2)
        out = out.index_select(dim, offsets % n)
        shape = [1] * out.ndim
        shape[dim] = size
        out = out * valid.view(shape).to(out.dtype)
    return out


def _taper(x: torch.Tensor, width: int) -> torch.Tensor:
    """Fade the outer ``width`` pixels of ``(..., h, w)`` images to their mean (raised cosine)."""
    out = x - x.mean(dim=(-2, -1), keepdim=True)
    for dim in (-2, -1):
        n = out.shape[dim]
        ramp_len = min(width, n // 2)
        window = torch.ones(n, dtype=x.dtype, device=x.device)
        steps = torch.arange(ramp_len, dtype=x.dtype, device=x.device)
        ramp = 0.5 - 0.5 * torch.cos(math.pi * (steps + 0.5) / ramp_len)
        window[:ramp_len] = ramp
        window[n - ramp_len:] = ramp.flip(0)
        shape = [1] * out.ndim
        shape[dim] = n
        out = out * window.view(shape)
    return out + x.mean(dim=(-2, -1), keepdim=True)


def lr_space_kernel(
    clean_lr: torch.Tensor,
    lr: torch.Tensor,
    size: int = 21,
    eps: float = 1e-20,
    keep: int | None = 22,
    taper: int = 0,
    channel_agreement: bool = False,
) -> torch.Tensor:
    """Eq. (4), the ground-truth LR-space kernel: ``k_l = F⁻¹( conj(X) Y / (conj(X) X + ε) )``.

    ``X = F(x↓s)`` is the DFT of ``clean_lr`` (the HR image downsampled by the same ``↓s``,
    no blur) and ``Y = F(y)`` that of ``lr``, both ``(B, 3, h, w)``. Per channel this is the
    regularised solution of ``y = x↓s ⊗ k_l`` (Eq. 2) for a circular convolution. Then:

    1. shift offset 0 to the centre and keep a ``size x size`` window (zero-padded when
       ``h`` or ``w`` < ``size``), and average the three channel estimates;
    2. zero the negligible values ("as in [2, 20]"): subtract 0.75 x the ``(keep + 1)``-th
       largest value and clamp at 0 (DCLS's rule). ``keep = 22 = round(0.05 * 21²)`` is the
       authors' choice (DCLS: 40); on random training crops it reproduces ``y`` ~3 dB better than
       40 and ~10 dB better than no zeroing. ``keep=None`` only clamps negatives;
    3. renormalise to sum 1 (an all-zero estimate, e.g. from a black patch, becomes a delta).

    ``taper`` > 0 (not in the paper, off by default) fades ``taper`` border pixels of both images
    to their means first; it reduces the error that the non-circular border of a real crop causes
    (about +5 dB on 48-pixel training crops). ``channel_agreement`` (the authors' code, not the
    paper) zeroes, before step 2, the entries where the product of the three channels'
    estimates is <= 0. The FFTs run in float64: with ε = 1e-20 float32
    is unstable. Returns ``(B, size, size)`` float32 without gradient (it is a training target),
    oriented for ``blur``: ``blur(clean_lr, k_l) ≈ lr``.
    """
    _check_images(clean_lr, "clean_lr")
    _check_images(lr, "lr")
    if clean_lr.shape != lr.shape:
        raise ValueError(f"clean_lr {tuple(clean_lr.shape)} and lr {tuple(lr.shape)} differ in shape")
    if not isinstance(size, numbers.Integral) or size < 1 or size % 2 == 0:
        raise ValueError(f"kernel size must be an odd positive integer, got {size!r}")
    if keep is not None and not 1 <= keep < size * size:
        raise ValueError(f"keep must be in [1, {size * size - 1}] or None, got {keep!r}")
    x = clean_lr.detach().to(torch.float64)
    y = lr.detach().to(torch.float64)
    if taper > 0:
        x, y = _taper(x, taper), _taper(y, taper)
    spec_x = torch.fft.fft2(x)
    spec_y = torch.fft.fft2(y)
    quotient = spec_x.conj() * spec_y / (spec_x.conj() * spec_x + eps)
    per_channel = _centred_window(torch.fft.ifft2(quotient).real, size)  # (B, C, k, k)
    kernels = per_channel.mean(dim=1)
    if channel_agreement:
        kernels = kernels * (per_channel.prod(dim=1) > 0)
    if keep is not None:
        ranked = kernels.flatten(1).sort(dim=1, descending=True).values
        kernels = kernels - 0.75 * ranked[:, keep].view(-1, 1, 1)
    kernels = kernels.clamp_min(0.0)
    total = kernels.sum(dim=(-2, -1), keepdim=True)
    delta = torch.zeros_like(kernels)
    delta[:, size // 2, size // 2] = 1.0
    kernels = torch.where(total > 0, kernels / total.clamp_min(1e-300), delta)
    return kernels.to(torch.float32)


@dataclass(frozen=True)
class Degradation:
    """One draw of the Section 4 degradation: ``k_h`` parameters, downsampler and scale."""

    kernel_size: int
    lambda1: float  # standard deviation along the rotated x axis (see gaussian_kernel)
    lambda2: float
    theta: float  # radians
    mode: str  # bicubic | bilinear | area
    scale: float

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown downsampler {self.mode!r}; valid modes: {', '.join(MODES)}")
        check_scale(self.scale)

    def kernel(self) -> torch.Tensor:
        """``k_h``: ``(kernel_size, kernel_size)`` float32."""
        return gaussian_kernel(self.kernel_size, self.lambda1, self.lambda2, self.theta)

    def lr_gaussian(self, size: int = 21) -> torch.Tensor:
        """The LR-space kernel this degradation implies if blur and resampling commuted: ``k_h``
        with both standard deviations divided by ``s``, ``(size, size)`` float32."""
        return gaussian_kernel(size, self.lambda1 / self.scale, self.lambda2 / self.scale, self.theta)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Degradation":
        names = {f.name for f in dataclasses.fields(cls)}
        if set(data) != names:
            raise ValueError(f"a Degradation needs exactly the keys {sorted(names)}, got {sorted(data)}")
        return cls(
            kernel_size=int(data["kernel_size"]), lambda1=float(data["lambda1"]),
            lambda2=float(data["lambda2"]), theta=float(data["theta"]), mode=str(data["mode"]),
            scale=check_scale(data["scale"]),
        )
