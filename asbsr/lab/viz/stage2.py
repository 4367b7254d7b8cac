"""Figures of stage 2: queries and cells (notebook 04), LTE's Fourier components, the modulation
weights, SR comparisons, and the cycle of Section 3.4 (notebook 05).

Every helper draws on axes it is given (or makes one figure) and returns what it drew, so a
notebook can assert on the same numbers it shows. Nothing here trains or evaluates a model.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import Rectangle

from asbsr.inference import grid_queries
from asbsr.models.coords import gather_neighbours, make_coord


def _to_xy(coord: torch.Tensor, lr_size: Sequence[int]) -> np.ndarray:
    """``(..., 2)`` (y, x) coordinates in [-1, 1] -> (x, y) in LR pixel units (0 .. w, 0 .. h)."""
    h, w = lr_size
    yx = (coord.double() + 1) / 2 * torch.tensor([h, w], dtype=torch.float64)
    return yx.flip(-1).numpy()


def query_geometry(lr_size: Sequence[int], out_size: Sequence[int], query: int) -> dict:
    """The geometry of one query of an ``out_size`` output of an ``lr_size`` input, from the
    package's own functions: ``grid_queries`` (coordinate and cell) and ``gather_neighbours``
    with the local ensemble on (its 4 neighbours and their area weights).

    Returns a dict of tensors: ``coord (2,)``, ``cell (2,)``, ``neighbours (4, 2)`` (row, col)
    and ``weights (4,)``, plus ``all_coords (H*W, 2)`` and ``lr_coords (h*w, 2)``.
    """
    h, w = lr_size
    coord, cell = grid_queries(out_size, lr_size, training_max_scale=None)
    # A map whose value is the pixel's own index turns the neighbour lookup into an index lookup.
    index_map = torch.arange(h * w, dtype=torch.float32).view(1, 1, h, w)
    (index,), _, weights = gather_neighbours([index_map], coord[None, query:query + 1], True)
    index = index.view(-1).long()
    return {"coord": coord[query], "cell": cell[query],
            "neighbours": torch.stack([index // w, index % w], dim=-1),
            "weights": weights.view(-1), "all_coords": coord, "lr_coords": make_coord(h, w)}


def draw_query_geometry(ax, lr_size: Sequence[int], out_size: Sequence[int], query: int) -> dict:
    """Draw an LR grid (pixel borders and centres), the centres of every output pixel, one query's
    cell, and lines to the 4 local-ensemble neighbours labelled with their area weights.
    Axes are in LR pixels, row 0 on top. Returns ``query_geometry(...)``."""
    geometry = query_geometry(lr_size, out_size, query)
    h, w = lr_size
    for row in range(h + 1):
        ax.axhline(row, color="0.75", lw=1)
    for col in range(w + 1):
        ax.axvline(col, color="0.75", lw=1)
    lr_xy = _to_xy(geometry["lr_coords"], lr_size)
    hr_xy = _to_xy(geometry["all_coords"], lr_size)
    ax.scatter(hr_xy[:, 0], hr_xy[:, 1], s=8, c="tab:blue", marker="x", lw=0.8,
               label=f"output pixel centres ({out_size[0]}x{out_size[1]})")
    ax.scatter(lr_xy[:, 0], lr_xy[:, 1], s=60, c="k", label=f"LR pixel centres ({h}x{w})")
    qx, qy = _to_xy(geometry["coord"], lr_size)
    cell_h, cell_w = (geometry["cell"].double() / 2 * torch.tensor([h, w])).tolist()
    ax.add_patch(Rectangle((qx - cell_w / 2, qy - cell_h / 2), cell_w, cell_h, fill=True,
                           alpha=0.3, color="tab:orange", label="the query's cell"))
    ax.scatter([qx], [qy], s=50, c="tab:red", zorder=5, label="the query")
    for (row, col), weight in zip(geometry["neighbours"].tolist(), geometry["weights"].tolist()):
        nx, ny = col + 0.5, row + 0.5
        ax.plot([qx, nx], [qy, ny], color="tab:red", lw=0.5 + 4 * weight)
        ax.annotate(f"{weight:.2f}", (nx, ny), textcoords="offset points", xytext=(6, 6),
                    color="tab:red", fontsize=10, weight="bold")
    ax.set_xlim(-0.1, w + 0.1)
    ax.set_ylim(h + 0.1, -0.1)
    ax.set_aspect("equal")
    ax.set_xlabel("x (LR pixels)")
    ax.set_ylabel("y (LR pixels)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8)
    return geometry


def lte_components(features: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """LTE's estimated Fourier components from ``encode``'s ``coef`` and ``freq`` maps.

    The head forms ``coef * [cos(pi (F_k . delta + phi_k)), sin(...)]``: channel ``k`` of
    ``coef`` weighs the cosine of frequency ``k`` and channel ``k + C/2`` its sine, so the
    amplitude of frequency ``k`` is ``sqrt(coef_k^2 + coef_{k+C/2}^2)``. ``freq`` channels
    ``(2k, 2k+1)`` are the ``(y, x)`` components of ``F_k``; since ``delta`` counts 2 units per LR
    pixel, ``F_k`` is in cycles per LR pixel.

    Returns ``freq (B, C/2, 2, h, w)`` with the last-but-two axis ``(y, x)`` and
    ``amplitude (B, C/2, h, w)``.
    """
    coef, freq = features["coef"], features["freq"]
    batch, channels, h, w = coef.shape
    half = channels // 2
    amplitude = torch.sqrt(coef[:, :half] ** 2 + coef[:, half:] ** 2)
    return freq.view(batch, half, 2, h, w), amplitude


def draw_fourier_components(fig, patch: torch.Tensor, freq: torch.Tensor, amplitude: torch.Tensor,
                            pixel: tuple[int, int]) -> None:
    """Three panels: the LR ``patch (3, h, w)`` with ``pixel`` marked; the total amplitude
    ``sum_k A_k`` per LR pixel; a scatter of the 2-D frequencies ``F_k`` at ``pixel`` (x
    horizontal, y down), each dot's area proportional to its amplitude.
    ``freq (C/2, 2, h, w)``, ``amplitude (C/2, h, w)`` (one image of ``lte_components``)."""
    axes = fig.subplots(1, 3, gridspec_kw={"wspace": 0.35})
    row, col = pixel
    axes[0].imshow(patch.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
    axes[0].scatter([col], [row], s=80, facecolors="none", edgecolors="red", lw=2)
    axes[0].set_title("LR patch (red: the pixel on the right)")
    total = amplitude.sum(0).numpy()
    shown = axes[1].imshow(total, cmap="magma", interpolation="nearest")
    fig.colorbar(shown, ax=axes[1], fraction=0.046)
    axes[1].set_title(r"total amplitude $\sum_k A_k$ per LR pixel")
    f = freq[:, :, row, col].numpy()
    a = amplitude[:, row, col].numpy()
    axes[2].scatter(f[:, 1], f[:, 0], s=300 * a / max(a.max(), 1e-12), c=a, cmap="viridis",
                    alpha=0.8)
    axes[2].axhline(0, color="0.7", lw=0.8)
    axes[2].axvline(0, color="0.7", lw=0.8)
    axes[2].invert_yaxis()
    axes[2].set_aspect("equal")
    axes[2].set_xlabel(r"$F_x$ (cycles / LR pixel)")
    axes[2].set_ylabel(r"$F_y$ (cycles / LR pixel)")
    axes[2].set_title(f"frequencies at pixel {pixel} (area ~ amplitude)")
    for ax in axes[:2]:
        ax.set_xticks([])
        ax.set_yticks([])


def draw_modulation_heatmap(ax, weights: torch.Tensor, widths: Sequence[float], title: str) -> None:
    """``weights (n_widths, n_feats)``: the sigmoid modulation of one residual block for images
    blurred with kernels of the given widths. Drawn as each channel's deviation from its own mean
    over the widths (so that the dependence on the blur shows whatever the channel's level),
    channels sorted by their spread across widths, largest on top."""
    data = weights.numpy()
    order = np.argsort(-(data.max(0) - data.min(0)))
    centred = (data - data.mean(0, keepdims=True))[:, order].T
    limit = max(float(np.abs(centred).max()), 1e-6)
    shown = ax.imshow(centred, aspect="auto", cmap="coolwarm", vmin=-limit, vmax=limit,
                      interpolation="nearest")
    ax.set_xticks(range(len(widths)))
    ax.set_xticklabels([f"{v:.1f}" for v in widths], rotation=90, fontsize=8)
    ax.set_xlabel(r"kernel width $\sigma$ (HR pixels)")
    ax.set_ylabel("channel (sorted by spread)")
    ax.set_title(f"{title}\nweights in [{data.min():.2f}, {data.max():.2f}]", fontsize=10)
    plt.colorbar(shown, ax=ax, fraction=0.046, label="weight - channel mean")


def draw_sr_comparison(rows: Sequence[Mapping]) -> plt.Figure:
    """One row per scale: LR (nearest-enlarged), bicubic, the model, HR, with PSNR in the titles.
    Each row: ``{"scale", "lr", "bicubic", "sr", "hr", "psnr_bicubic", "psnr_sr", "label"}``,
    images ``(3, H, W)`` in [0, 1] (``lr`` may be smaller)."""
    fig, axes = plt.subplots(len(rows), 4, figsize=(12, 3.1 * len(rows)), squeeze=False)
    for line, row in zip(axes, rows):
        lr_h, lr_w = row["lr"].shape[-2:]
        panels = [(row["lr"], f"LR x{row['scale']:g} ({lr_w}x{lr_h})"),
                  (row["bicubic"], f"bicubic {row['psnr_bicubic']:.2f} dB"),
                  (row["sr"], f"{row['label']} {row['psnr_sr']:.2f} dB"),
                  (row["hr"], "HR")]
        for ax, (image, title) in zip(line, panels):
            ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
            ax.set_title(title, fontsize=10)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    return fig


def draw_image_grid(rows: Sequence[Sequence[tuple]], size: float = 3.0) -> plt.Figure:
    """A grid of ``(image, title)`` or ``(image, title, imshow_options)`` panels, one list per
    row: ``(3, H, W)`` images in [0, 1] are drawn as they are, ``(H, W)`` maps (kernels, errors)
    with a colour map and a colour bar (pass e.g. ``{"vmax": v}`` to share a colour scale)."""
    columns = max(len(row) for row in rows)
    fig, axes = plt.subplots(len(rows), columns, figsize=(size * columns, (size + 0.4) * len(rows)),
                             squeeze=False, layout="constrained")
    for line, row in zip(axes, rows):
        for ax in line[len(row):]:
            ax.axis("off")
        for ax, (image, title, *options) in zip(line, row):
            options = options[0] if options else {}
            if image.dim() == 2:
                shown = ax.imshow(image.numpy(), cmap="magma", interpolation="nearest", **options)
                fig.colorbar(shown, ax=ax, fraction=0.046)
            else:
                ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
            ax.set_title(title, fontsize=10)
            ax.set_xticks([])
            ax.set_yticks([])
    return fig


def smooth(values: Sequence[float], window: int) -> np.ndarray:
    """Trailing moving average over ``window`` points (shorter at the start)."""
    values = np.asarray(values, dtype=float)
    if window <= 1 or values.size == 0:
        return values
    cumulative = np.cumsum(np.insert(values, 0, 0.0))
    counts = np.minimum(np.arange(1, values.size + 1), window)
    return (cumulative[1:] - cumulative[np.arange(1, values.size + 1) - counts]) / counts


def draw_curves(ax, histories: Mapping[str, Mapping], key: str, step_key: str, ylabel: str,
                window_steps: float = 1) -> None:
    """``history[key]`` against ``history[step_key]`` for each labelled history, raw (faint) and
    smoothed by a trailing mean over ``window_steps`` training steps (the same span for every
    curve, however densely it was recorded)."""
    for index, (label, history) in enumerate(histories.items()):
        colour = f"C{index}"
        steps, values = np.asarray(history[step_key]), np.asarray(history[key])
        spacing = (steps[-1] - steps[0]) / max(len(steps) - 1, 1) if len(steps) > 1 else 1
        window = max(1, int(round(window_steps / max(spacing, 1e-12))))
        ax.plot(steps, values, color=colour, alpha=0.25, lw=0.8)
        ax.plot(steps, smooth(values, window), color=colour, lw=2, label=label)
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel)
    ax.legend()
    ax.grid(alpha=0.3)


def draw_paired_differences(ax, differences: Sequence[float], names: Sequence[str],
                            interval: tuple[float, float], reference: float | None = None,
                            label: str = "A - B") -> None:
    """Per-sample PSNR differences (one dot each, by sample) with their mean, its confidence
    ``interval`` (shaded), the zero line and an optional ``reference`` effect (e.g. a paper's)."""
    differences = np.asarray(differences, dtype=float)
    order = np.argsort(differences)
    positions = np.arange(differences.size)
    ax.scatter(differences[order], positions, s=30, zorder=3)
    ax.set_yticks(positions)
    ax.set_yticklabels([names[i] for i in order], fontsize=8)
    mean = differences.mean()
    low, high = interval
    if np.isfinite(low) and np.isfinite(high):
        ax.axvspan(low, high, color="tab:blue", alpha=0.15,
                   label=f"95 % CI [{low:+.3f}, {high:+.3f}]")
    ax.axvline(mean, color="tab:blue", lw=2, label=f"mean {mean:+.3f} dB")
    ax.axvline(0, color="k", lw=1)
    if reference is not None:
        ax.axvline(reference, color="tab:red", lw=1.5, ls="--",
                   label=f"paper's effect {reference:+.2f} dB")
    ax.set_xlabel(f"PSNR difference {label} (dB)")
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3, axis="x")
