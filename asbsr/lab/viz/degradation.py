"""Figures of notebook 01: the degradation model of Eq. 1-2 and the LR-space kernel of Eq. 4.

* ``kernel_widths``     -- the standard deviations a kernel really has (for titles and checks);
* ``kernel_gallery``    -- kernels of different sizes drawn on one common pixel grid;
* ``degradation_grid``  -- an HR crop beside LR versions of it, every image at the same size;
* ``degradation_panel`` -- HR crop, ``k_h``, LR image and the LR image's Haar high bands
  (the figure of the notebook's widget);
* ``kernel_hr_vs_lr``   -- ``k_h`` beside ``k_l`` of Eq. 4 for several scales, with optional
  maps of how well each kernel explains ``y`` in LR space.

Images are ``(3, H, W)`` float tensors in ``[0, 1]``; kernels are ``(k, k)`` with an odd ``k``.
Every helper returns the matplotlib ``Figure`` it made; it neither shows nor closes it.
Kernels are drawn on a grid centred on offset 0 (``extent``), so that a 7x7 and a 21x21 kernel
share one pixel size; LR images are drawn over the HR crop's extent, so a x4 image appears as
large as the HR crop, with pixels four times as big.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

BAND_TITLES = ("|LH| horizontal edges", "|HL| vertical edges", "|HH| diagonal detail")
KERNEL_CMAP = "magma"


def kernel_widths(kernel: torch.Tensor) -> torch.Tensor:
    """Standard deviations (pixels) of a kernel along its two principal axes, largest first.

    ``kernel``: ``(k, k)``, non-negative, summing to 1. Returns ``(2,)`` float64: the square roots
    of the eigenvalues of its second central moment ``Σ_d k(d) (d - μ)(d - μ)ᵀ``. For
    ``gaussian_kernel(k, λ1, λ2, θ)`` with ``k`` several times ``λ`` this is ``(max λ, min λ)``;
    a kernel cut off by its window measures narrower, and stray values far from the centre
    (an estimated ``k_l``) measure wider than the kernel's core looks.
    """
    if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1]:
        raise ValueError(f"kernel_widths needs a square (k, k) kernel, got {tuple(kernel.shape)}")
    k = kernel.detach().to("cpu", torch.float64)
    offsets = torch.arange(k.shape[-1], dtype=torch.float64) - k.shape[-1] // 2
    rows, cols = torch.meshgrid(offsets, offsets, indexing="ij")
    k = k / k.sum()
    mean_x, mean_y = (k * cols).sum(), (k * rows).sum()
    dx, dy = cols - mean_x, rows - mean_y
    moment = torch.stack([torch.stack([(k * dx * dx).sum(), (k * dx * dy).sum()]),
                          torch.stack([(k * dx * dy).sum(), (k * dy * dy).sum()])])
    return torch.linalg.eigvalsh(moment).flip(0).clamp_min(0).sqrt()


def _as_image(image: torch.Tensor) -> np.ndarray:
    """``(3, H, W)`` tensor -> ``(H, W, 3)`` numpy array clipped to [0, 1] for ``imshow``."""
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) image, got {tuple(image.shape)}")
    return image.detach().to("cpu", torch.float32).clamp(0, 1).permute(1, 2, 0).numpy()


def _bare(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def draw_kernel(ax, kernel: torch.Tensor, grid: int, title: str | None = None) -> None:
    """Draw a ``(k, k)`` kernel centred in a ``grid x grid`` pixel window (grey outside it),
    scaled from 0 (black) to its own peak (white)."""
    size = kernel.shape[-1]
    half, grid_half = size / 2, grid / 2
    ax.set_facecolor("0.8")
    ax.imshow(kernel.detach().cpu().numpy(), cmap=KERNEL_CMAP, interpolation="nearest",
              extent=(-half, half, half, -half), vmin=0)
    ax.set_xlim(-grid_half, grid_half)
    ax.set_ylim(grid_half, -grid_half)
    _bare(ax)
    if title:
        ax.set_title(title, fontsize=8)


def kernel_gallery(
    kernels: Sequence[torch.Tensor] | torch.Tensor,
    titles: Sequence[str],
    ncols: int = 6,
    grid: int | None = None,
    suptitle: str | None = None,
) -> Figure:
    """Kernels side by side, each centred on a common ``grid x grid`` window of pixels.

    ``kernels``: ``N`` tensors ``(k_i, k_i)`` (sizes may differ) or one ``(N, k, k)`` tensor;
    ``titles``: ``N`` strings. ``grid`` defaults to the largest ``k_i``. Each kernel has its own
    colour scale, 0 to its peak, so a wide and a narrow kernel are both visible; the window's
    grey frame shows a kernel's size. The figure has exactly ``N`` axes, in row-major order.
    """
    kernels = list(kernels)
    if len(kernels) != len(titles):
        raise ValueError(f"{len(kernels)} kernels but {len(titles)} titles")
    if not kernels:
        raise ValueError("kernel_gallery needs at least one kernel")
    grid = grid or max(k.shape[-1] for k in kernels)
    ncols = min(ncols, len(kernels))
    nrows = math.ceil(len(kernels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.9 * ncols, 2.2 * nrows), squeeze=False,
                             layout="constrained")
    flat = axes.ravel()
    for ax, kernel, title in zip(flat, kernels, titles):
        draw_kernel(ax, kernel, grid, title)
    for ax in flat[len(kernels):]:
        fig.delaxes(ax)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return fig


def _draw_at_hr_size(ax, image: torch.Tensor, hr_size: Sequence[int], title: str) -> None:
    """Draw ``(3, h, w)`` stretched over an ``(H, W)`` extent, nearest-neighbour, size in title."""
    height, width = hr_size
    ax.imshow(_as_image(image), extent=(0, width, height, 0), interpolation="nearest")
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    _bare(ax)
    ax.set_title(f"{title}\n{image.shape[-2]}x{image.shape[-1]} px", fontsize=8)


def degradation_grid(
    hr: torch.Tensor,
    rows: Sequence[Sequence[tuple[str, torch.Tensor]]],
    row_labels: Sequence[str] | None = None,
    hr_title: str = "HR crop x",
) -> Figure:
    """An HR crop and LR versions of it, all drawn at the same display size.

    ``hr``: ``(3, H, W)``, drawn first in every row; ``rows``: for each row a list of
    ``(title, image (3, h, w))``; a row with fewer images than the longest leaves its last
    cells empty (those axes are removed). ``row_labels`` go on the left. Every image spans the
    ``H x W`` extent with nearest-neighbour pixels, so a smaller LR image shows bigger pixels;
    each title ends with the image's real size.
    """
    if row_labels is not None and len(row_labels) != len(rows):
        raise ValueError(f"{len(rows)} rows but {len(row_labels)} row labels")
    hr_size = tuple(hr.shape[-2:])
    ncols = 1 + max(len(row) for row in rows)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(2.5 * ncols, 2.7 * len(rows)), squeeze=False,
                             layout="constrained")
    for r, row in enumerate(rows):
        _draw_at_hr_size(axes[r, 0], hr, hr_size, hr_title)
        if row_labels is not None:
            axes[r, 0].set_ylabel(row_labels[r], fontsize=9)
        for c, (title, image) in enumerate(row, start=1):
            _draw_at_hr_size(axes[r, c], image, hr_size, title)
        for c in range(1 + len(row), ncols):
            fig.delaxes(axes[r, c])
    return fig


def band_magnitudes(high_bands: torch.Tensor) -> torch.Tensor:
    """``haar_high_bands`` of one RGB image, ``(9, h, w)`` ordered ``[LH, HL, HH]`` per channel,
    -> ``(3, h, w)``: ``|LH|, |HL|, |HH|`` averaged over R, G, B."""
    if high_bands.ndim != 3 or high_bands.shape[0] != 9:
        raise ValueError(f"expected the (9, h, w) Haar high bands of one RGB image, got "
                         f"{tuple(high_bands.shape)}")
    return high_bands.detach().cpu().view(3, 3, *high_bands.shape[-2:]).abs().mean(dim=0)


def degradation_panel(
    hr: torch.Tensor,
    kernel: torch.Tensor,
    lr: torch.Tensor,
    high_bands: torch.Tensor,
    title: str | None = None,
    band_vmax: float | None = None,
) -> Figure:
    """One degradation, start to end: HR crop ``x``, ``k_h``, ``y`` and ``y``'s Haar high bands.

    ``hr``: ``(3, H, W)``; ``kernel``: ``(k, k)``; ``lr``: ``y``, ``(3, h, w)``;
    ``high_bands``: ``haar_high_bands(y)`` for this one image, ``(9, ceil(h/2), ceil(w/2))``.
    Six axes: x, k_h (on a 21-pixel window, its measured widths in the title), y and
    ``|LH|, |HL|, |HH|`` (``band_magnitudes``), each drawn over the HR extent. The three bands
    share one grey scale from 0 to ``band_vmax`` (default: 0.15, so that panels drawn for
    different settings compare); their titles give the band's mean magnitude.
    """
    hr_size = tuple(hr.shape[-2:])
    bands = band_magnitudes(high_bands)
    vmax = 0.15 if band_vmax is None else band_vmax
    fig, axes = plt.subplots(1, 6, figsize=(15, 3.1), layout="constrained")
    _draw_at_hr_size(axes[0], hr, hr_size, "HR crop x")
    widths = kernel_widths(kernel)
    draw_kernel(axes[1], kernel, max(21, kernel.shape[-1]),
                f"k_h {kernel.shape[-1]}x{kernel.shape[-1]} (HR px)\n"
                f"widths {widths[0]:.2f}, {widths[1]:.2f}")
    _draw_at_hr_size(axes[2], lr, hr_size, "LR y")
    height, width = hr_size
    for ax, band, name in zip(axes[3:], bands, BAND_TITLES):
        ax.imshow(band.numpy(), cmap="gray", vmin=0, vmax=vmax, interpolation="nearest",
                  extent=(0, width, height, 0))
        _bare(ax)
        ax.set_title(f"{name}\nmean {band.mean():.4f}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def kernel_hr_vs_lr(
    k_h: torch.Tensor,
    k_l: torch.Tensor,
    scales: Sequence[float],
    references: torch.Tensor | None = None,
    residuals: Sequence[Mapping[str, torch.Tensor]] | None = None,
    residual_vmax: float | None = None,
) -> Figure:
    """``k_h`` (HR pixels) beside the LR-space kernels ``k_l`` of Eq. 4, one row per scale.

    ``k_h``: ``(K, K)``; ``k_l``: ``(S, K', K')``, row ``i`` for ``scales[i]``; ``references``:
    optional ``(S, K', K')`` drawn between them (e.g. ``k_h`` shrunk by each scale). Kernel
    titles give ``kernel_widths``. ``residuals``: optional, per row a mapping ``title -> (h, w)``
    map (e.g. ``|y - blur(x↓s, k)|`` averaged over RGB), drawn after the kernels on one shared
    scale, black 0 to white ``residual_vmax`` (default: the largest 99.5th percentile). Axes:
    ``S x (2 + [references] + len(residuals[i]))``, row-major; all kernels on one common window.
    """
    scales = [float(s) for s in scales]
    if k_l.ndim != 3 or k_l.shape[0] != len(scales):
        raise ValueError(f"k_l must be (S, K, K) with S = {len(scales)} scales, got {tuple(k_l.shape)}")
    if references is not None and references.shape != k_l.shape:
        raise ValueError(f"references {tuple(references.shape)} must match k_l {tuple(k_l.shape)}")
    if residuals is not None and len(residuals) != len(scales):
        raise ValueError(f"{len(residuals)} rows of residuals for {len(scales)} scales")
    grid = max(k_h.shape[-1], k_l.shape[-1])
    n_maps = max((len(r) for r in residuals), default=0) if residuals is not None else 0
    ncols = 2 + (references is not None) + n_maps
    if residuals is not None and residual_vmax is None:
        values = [torch.quantile(m.detach().cpu().double().flatten(), 0.995).item()
                  for row in residuals for m in row.values()]
        residual_vmax = max(values + [1e-12])
    fig, axes = plt.subplots(len(scales), ncols, figsize=(2.3 * ncols, 2.5 * len(scales)),
                             squeeze=False, layout="constrained")
    for i, scale in enumerate(scales):
        w = kernel_widths(k_h)
        draw_kernel(axes[i, 0], k_h, grid, f"k_h (HR px)\nwidths {w[0]:.2f}, {w[1]:.2f}")
        column = 1
        if references is not None:
            w = kernel_widths(references[i])
            draw_kernel(axes[i, column], references[i], grid,
                        f"k_h shrunk by {scale:g}\nwidths {w[0]:.2f}, {w[1]:.2f}")
            column += 1
        w = kernel_widths(k_l[i])
        draw_kernel(axes[i, column], k_l[i], grid,
                    f"k_l at x{scale:g} (LR px)\nwidths {w[0]:.2f}, {w[1]:.2f}")
        column += 1
        for title, error in (residuals[i].items() if residuals is not None else ()):
            axes[i, column].imshow(error.detach().cpu().numpy(), cmap="gray", vmin=0,
                                   vmax=residual_vmax, interpolation="nearest")
            _bare(axes[i, column])
            axes[i, column].set_title(title, fontsize=8)
            column += 1
        for c in range(column, ncols):
            fig.delaxes(axes[i, c])
    if residuals is not None:
        fig.suptitle(f"residual maps: black 0, white >= {residual_vmax:.3f}", fontsize=9)
    return fig
