"""Figures of stage 1: the Haar bands E reads, SimSiam pairs, training curves, what E's
representation separates (notebook 02), and M's kernels next to the true ones (notebook 03).

Each helper makes one matplotlib figure from tensors the notebook computed with the package
(``asbsr.lab.analysis``, the models) and returns it; nothing here trains or evaluates a network.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from asbsr.lab.analysis import BAND_NAMES


def _image(x: torch.Tensor) -> np.ndarray:
    """``(3, h, w)`` in [0, 1] -> ``(h, w, 3)`` array for imshow."""
    return x.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()


def show_haar_bands(patches: Mapping[str, torch.Tensor], bands: Mapping[str, torch.Tensor],
                    energies: Mapping[str, torch.Tensor]):
    """One row per degradation: the LR patch and its LH, HL, HH bands (absolute value, mean
    over RGB), each band column on one shared colour scale so that rows compare directly.

    ``patches[label]``: ``(3, h, w)``; ``bands[label]``: ``(9, h/2, w/2)`` as
    ``haar_high_bands`` returns them; ``energies[label]``: ``(4,)`` from ``band_energies``.
    """
    labels = list(patches)
    maps = {label: bands[label].detach().abs().view(3, 3, *bands[label].shape[-2:]).mean(dim=0)
            for label in labels}  # (band, h, w), RGB averaged
    top = [max(float(maps[label][b].max()) for label in labels) for b in range(3)]
    fig, axes = plt.subplots(len(labels), 4, figsize=(10, 2.9 * len(labels) + 0.3), squeeze=False)
    for row, label in enumerate(labels):
        axes[row, 0].imshow(_image(patches[label]))
        axes[row, 0].set_title(f"{label}\nLL energy {float(energies[label][0]):.3f}", fontsize=9)
        for b, name in enumerate(BAND_NAMES):
            axes[row, b + 1].imshow(maps[label][b].cpu().numpy(), cmap="magma", vmin=0, vmax=top[b])
            axes[row, b + 1].set_title(f"|{name}|  energy {float(energies[label][b + 1]):.2e}", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout()
    return fig


def plot_band_energy(widths: Sequence[float], fractions: Mapping[str, torch.Tensor]):
    """The share of a patch's energy in the three high bands against the blur width, one line
    per scale: ``fractions[label]`` is ``(len(widths),)``."""
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for label, values in fractions.items():
        ax.plot(widths, values.cpu().numpy(), marker="o", label=label)
    ax.set_yscale("log")
    ax.set_xlabel("blur width λ of k_h (HR pixels, isotropic)")
    ax.set_ylabel("(LH + HL + HH) energy / total")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def show_pairs(lr1: torch.Tensor, lr2: torch.Tensor, captions: Sequence[str]):
    """SimSiam positive pairs: two LR crops ``(B, 3, p, p)`` per column, one degradation each."""
    count = len(captions)
    fig, axes = plt.subplots(2, count, figsize=(2.0 * count, 4.4), squeeze=False)
    for col in range(count):
        axes[0, col].imshow(_image(lr1[col]))
        axes[1, col].imshow(_image(lr2[col]))
        axes[0, col].set_title(captions[col], fontsize=8)
    axes[0, 0].set_ylabel("view y1")
    axes[1, 0].set_ylabel("view y2")
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout()
    return fig


def moving_average(values: Sequence[float], window: int) -> np.ndarray:
    """Trailing mean over ``window`` points (shorter at the start), same length as ``values``."""
    values = np.asarray(values, dtype=float)
    cumulative = np.cumsum(np.insert(values, 0, 0.0))
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    ends = np.arange(1, len(values) + 1)
    return (cumulative[ends] - cumulative[ends - counts]) / counts


# How the training histories' keys read on a figure.
LOSS_NAMES = {"contrastive": r"$\mathcal{L}_{cl}$ (SimSiam, Eq. 3)",
              "kernel": r"$\mathcal{L}_k$ (plain L1 of $\hat{k}_l$)",
              "loss": r"$\mathcal{L}_{cl}$ + weighted $\mathcal{L}_k$ (what is minimised)"}


def plot_training_curves(history: Mapping[str, Sequence[float]], keys: Sequence[str],
                         window: int = 10, log: Sequence[str] = ()):
    """One panel per history key against the step: raw values (faint) and their moving average,
    titled with the loss's name (``LOSS_NAMES``). Keys in ``log`` get a logarithmic y axis."""
    steps = np.asarray(history.get("step", range(1, len(history[keys[0]]) + 1)))
    fig, axes = plt.subplots(1, len(keys), figsize=(4.8 * len(keys), 3.3), squeeze=False)
    for ax, key in zip(axes[0], keys):
        values = np.asarray(history[key], dtype=float)
        ax.plot(steps, values, color="0.75", lw=0.8, label="per step")
        ax.plot(steps, moving_average(values, window), color="tab:blue", label=f"mean of {window}")
        ax.set_title(LOSS_NAMES.get(key, key)), ax.set_xlabel("step")
        if key in log:
            ax.set_yscale("log")
        ax.grid(alpha=0.3), ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_pca(points: Mapping[str, torch.Tensor], explained: Mapping[str, torch.Tensor],
             colours: Mapping[str, torch.Tensor]):
    """2-D PCA of several encoders' representations: one row per encoder, one column per label
    the points are coloured by (``colours[label]``: ``(N,)``)."""
    fig, axes = plt.subplots(len(points), len(colours), figsize=(4.4 * len(colours), 3.6 * len(points)),
                             squeeze=False)
    for row, (name, xy) in enumerate(points.items()):
        xy = xy.cpu().numpy()
        ratio = explained[name].cpu().numpy()
        for col, (label, values) in enumerate(colours.items()):
            ax = axes[row, col]
            shown = ax.scatter(xy[:, 0], xy[:, 1], c=values.cpu().numpy(), cmap="viridis", s=9)
            fig.colorbar(shown, ax=ax, label=label)
            ax.set_title(f"{name}: coloured by {label}", fontsize=9)
            ax.set_xlabel(f"PC 1 ({100 * ratio[0]:.0f} % of variance)")
            ax.set_ylabel(f"PC 2 ({100 * ratio[1]:.0f} %)")
            ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout()
    return fig


def plot_probe_scores(scores: Mapping[str, Mapping[str, Mapping[str, float]]]):
    """Grouped bars of ``scores[method][encoder][label]`` (e.g. held-out R² of a probe): one panel
    per method, one group of bars per label, one bar per encoder, values written on the bars."""
    methods = list(scores)
    encoders = list(scores[methods[0]])
    labels = list(scores[methods[0]][encoders[0]])
    width = 0.8 / len(encoders)
    fig, axes = plt.subplots(1, len(methods), figsize=(5.2 * len(methods), 3.6), squeeze=False,
                             sharey=True)
    for ax, method in zip(axes[0], methods):
        for i, encoder in enumerate(encoders):
            x = np.arange(len(labels)) + (i - (len(encoders) - 1) / 2) * width
            values = [scores[method][encoder][label] for label in labels]
            ax.bar(x, values, width, label=encoder)
            for xi, v in zip(x, values):
                ax.text(xi, v, f"{v:.2f}", ha="center", va="bottom" if v >= 0 else "top", fontsize=7)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xticks(np.arange(len(labels)), labels)
        ax.set_title(f"{method}: held-out R²", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].set_ylabel("R² (1 = perfect, 0 = predicting the mean)")
    axes[0, -1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def _kernel_panel(ax, kernel: torch.Tensor, vmax: float | None, title: str) -> None:
    k = kernel.detach().float().cpu().numpy()
    ax.imshow(k, cmap="magma", vmin=min(0.0, float(k.min())), vmax=vmax if vmax else float(k.max()))
    ax.set_title(title, fontsize=8)
    ax.set_xticks([]), ax.set_yticks([])


def show_kernel_chain(filters: Sequence[torch.Tensor], kernel: torch.Tensor):
    """M's deep linear convolution for one representation: the four predicted filters
    (11x11, 7x7, 5x5, 1x1; signed, red positive and blue negative) and the resulting k̂_l."""
    fig, axes = plt.subplots(1, len(filters) + 1, figsize=(2.6 * (len(filters) + 1), 2.9),
                             gridspec_kw={"width_ratios": [f.shape[-1] for f in filters] + [21]})
    for ax, f in zip(axes, filters):
        f = f.detach().float().cpu()
        limit = float(f.abs().max()) or 1.0
        ax.imshow(f.numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_title(f"{f.shape[-1]}x{f.shape[-1]} filter\nsum {float(f.sum()):.2f}", fontsize=8)
        ax.set_xticks([]), ax.set_yticks([])
    _kernel_panel(axes[-1], kernel, None, f"k̂_l = their convolution / sum\n{kernel.shape[-1]}x{kernel.shape[-1]}")
    fig.tight_layout()
    return fig


def central(kernel: torch.Tensor, side: int) -> torch.Tensor:
    """The central ``side x side`` of a ``(..., K, K)`` kernel (all of it when ``side >= K``)."""
    size = kernel.shape[-1]
    if side >= size:
        return kernel
    start = (size - side) // 2
    return kernel[..., start:start + side, start:start + side]


def show_kernel_rows(rows: Mapping[str, torch.Tensor], column_titles: Sequence[str],
                     group: int | None = None, notes: Mapping[str, Sequence[str]] | None = None,
                     crop: int | None = 9):
    """A grid of kernels: ``rows[name]`` is ``(n, K, K)``, one kernel per column.

    In each column, every ``group`` consecutive rows share one colour scale (``None``: the whole
    column, to compare peak heights; ``1``: each panel on its own, to compare shapes; ``2``: a
    true kernel and its estimate side by side). ``notes[name][j]`` is written under the title
    of panel ``j`` of that row (e.g. its L1 error). Negative values, which a deep linear estimate
    may have, extend the colour scale below 0. Only the central ``crop x crop`` pixels are shown
    (``None``: the whole kernel): the rest of a 21x21 kernel is nearly zero. Each row has a colour
    bar, for the scale of its last panel.
    """
    rows = {name: central(kernels, crop) if crop else kernels for name, kernels in rows.items()}
    names = list(rows)
    group = group or len(names)
    columns = len(column_titles)
    fig, axes = plt.subplots(len(names), columns, figsize=(1.9 * columns + 1.2, 2.0 * len(names) + 0.4),
                             squeeze=False)
    for j in range(columns):
        for start in range(0, len(names), group):
            members = names[start:start + group]
            vmax = max(float(rows[n][j].max()) for n in members)
            for i, name in enumerate(members, start):
                note = notes[name][j] if notes and name in notes else ""
                title = "\n".join(t for t in (column_titles[j] if i == 0 else "", note) if t)
                _kernel_panel(axes[i, j], rows[name][j], vmax, title)
    for i, name in enumerate(names):
        axes[i, 0].set_ylabel(name, fontsize=9)
    fig.tight_layout()
    for i in range(len(names)):
        fig.colorbar(axes[i, -1].images[0], ax=list(axes[i]), fraction=0.02, pad=0.01)
    return fig


def plot_reblur_psnr(psnrs: Mapping[str, torch.Tensor]):
    """Histograms of the per-patch LR-consistency PSNR ``PSNR(x↓s ⊗ k, y)`` for several kernels
    ``k`` (``psnrs[label]``: ``(N,)`` dB), with each mean marked."""
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    values = torch.cat([v.double() for v in psnrs.values()])
    bins = np.linspace(float(values.min()), float(values.max()), 40)
    for label, v in psnrs.items():
        shown = ax.hist(v.cpu().numpy(), bins=bins, alpha=0.45, label=f"{label} (mean {float(v.mean()):.1f} dB)")
        ax.axvline(float(v.mean()), color=shown[2][0].get_facecolor(), lw=2)
    ax.set_xlabel("PSNR(x↓s ⊗ k, y) on Y  [dB]")
    ax.set_ylabel("patches")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
