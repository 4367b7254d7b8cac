"""Figures of the results (notebook 07): Figure 3's zoomed comparison, Figure 5's real photos side
by side, and a slider that redraws a few methods at any scale.

Images are ``(3, H, W)`` tensors in [0, 1]; a *box* is ``(top, left, height, width)`` in pixels of
the image it is drawn on. The helpers draw what they are given and return the figure; they compute
no score that anything depends on.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import Rectangle

Box = tuple[int, int, int, int]
BOX_COLOUR = "yellow"  # the paper marks its magnified areas with yellow boxes


def _show(ax, image: torch.Tensor, title: str = "") -> None:
    ax.imshow(image.detach().permute(1, 2, 0).clamp(0, 1).cpu().numpy(), interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def crop(image: torch.Tensor, box: Box) -> torch.Tensor:
    """The ``box`` of ``image (..., H, W)``; ``ValueError`` if it leaves the image."""
    top, left, height, width = box
    if top < 0 or left < 0 or top + height > image.shape[-2] or left + width > image.shape[-1]:
        raise ValueError(f"box {box} leaves an image of {tuple(image.shape[-2:])}")
    return image[..., top:top + height, left:left + width]


def lr_box(box: Box, hr_size: Sequence[int], lr_size: Sequence[int]) -> Box:
    """The smallest box of LR pixels covering an HR ``box`` (LR pixel ``i`` spans HR
    ``[i * H / h, (i + 1) * H / h)``)."""
    top, left, height, width = box
    fy, fx = lr_size[0] / hr_size[0], lr_size[1] / hr_size[1]
    y0, x0 = math.floor(top * fy), math.floor(left * fx)
    y1 = min(math.ceil((top + height) * fy), lr_size[0])
    x1 = min(math.ceil((left + width) * fx), lr_size[1])
    return y0, x0, y1 - y0, x1 - x0


def mark_box(ax, box: Box, colour: str = BOX_COLOUR, lw: float = 2.0) -> Rectangle:
    """Outline ``box`` on axes showing the image it refers to (pixel centres at integers)."""
    top, left, height, width = box
    patch = Rectangle((left - 0.5, top - 0.5), width, height, fill=False, edgecolor=colour, lw=lw)
    ax.add_patch(patch)
    return patch


def zoom_figure(rows: Sequence[Mapping], box: Box, size: float = 2.2) -> plt.Figure:
    """Figure 3: one row per scale -- the full HR image with the zoomed ``box`` marked, the HR
    crop, the LR crop (nearest-enlarged), then each method's output cropped to the same box.

    Each row: ``{"label": "x3", "hr": (3, H, W), "lr": (3, h, w),
    "outputs": {name: (3, H, W)}, "scores": {name: PSNR in dB of the whole output}}``.
    """
    columns = 3 + max(len(row["outputs"]) for row in rows)
    fig, axes = plt.subplots(len(rows), columns, figsize=(size * columns, size * len(rows) + 0.3),
                             squeeze=False)
    for line, row in zip(axes, rows):
        hr, lr = row["hr"], row["lr"]
        _show(line[0], hr, f"{row['label']}: HR {hr.shape[-1]}x{hr.shape[-2]}")
        mark_box(line[0], box)
        _show(line[1], crop(hr, box), "HR (zoom)")
        _show(line[2], crop(lr, lr_box(box, hr.shape[-2:], lr.shape[-2:])),
              f"LR {lr.shape[-1]}x{lr.shape[-2]} (zoom)")
        for ax, (name, image) in zip(line[3:], row["outputs"].items()):
            if tuple(image.shape[-2:]) != tuple(hr.shape[-2:]):
                raise ValueError(f"{name}: output {tuple(image.shape[-2:])} is not the HR size")
            score = row.get("scores", {}).get(name)
            _show(ax, crop(image, box), name + (f"\n{score:.2f} dB" if score is not None else ""))
        for ax in line[3 + len(row["outputs"]):]:
            ax.axis("off")
    fig.tight_layout()
    return fig


def side_by_side(lr: torch.Tensor, outputs: Mapping[str, torch.Tensor], size: float = 3.0,
                 columns: int = 4) -> plt.Figure:
    """Figure 5: the real LR input (nearest-enlarged to the output size) and each method's
    output, all shown at the same display size so that detail can be compared, on a grid of
    ``columns`` panels a row (unused panels blank)."""
    panels = 1 + len(outputs)
    rows = -(-panels // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(size * columns, (size + 0.4) * rows), squeeze=False)
    flat = axes.ravel()
    _show(flat[0], lr, f"LR input {lr.shape[-1]}x{lr.shape[-2]}")
    for ax, (name, image) in zip(flat[1:], outputs.items()):
        _show(ax, image, f"{name} {image.shape[-1]}x{image.shape[-2]}")
    for ax in flat[panels:]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def upscale_all(lr: torch.Tensor, upscalers: Mapping[str, Callable], scale: float
                ) -> dict[str, torch.Tensor]:
    """Each upscaler's output of ``lr (3, h, w)`` at ``scale``: ``{name: (3, round(h s), round(w s))}``."""
    size = (round(lr.shape[-2] * scale), round(lr.shape[-1] * scale))
    return {name: upscale(lr[None], size)[0] for name, upscale in upscalers.items()}


def scale_explorer(lr: torch.Tensor, upscalers: Mapping[str, Callable], value: float = 4.0,
                   low: float = 1.0, high: float = 8.0, step: float = 0.1):
    """A slider (``low`` .. ``high``) that redraws every upscaler's output of ``lr`` at the chosen
    scale, beside the nearest-enlarged LR, in an output area below it.

    Returns ``(widget, figure_at)``: ``figure_at(scale) -> (outputs, figure)`` draws one scale
    outside the widget, for the static copy of a notebook (a headless run stores nothing that the
    widget's own output area shows)."""
    import ipywidgets as widgets
    from IPython.display import display

    slider = widgets.FloatSlider(value=value, min=low, max=high, step=step, description="scale",
                                 continuous_update=False)
    output = widgets.Output()

    def figure_at(scale: float) -> tuple[dict[str, torch.Tensor], plt.Figure]:
        outputs = upscale_all(lr, upscalers, scale)
        labelled = {f"{name} x{scale:g}": image for name, image in outputs.items()}
        return outputs, side_by_side(lr, labelled)

    def redraw(change) -> None:
        with output:
            output.clear_output(wait=True)
            _, fig = figure_at(change["new"])
            display(fig)
            plt.close(fig)

    slider.observe(redraw, names="value")
    return widgets.VBox([slider, output]), figure_at


def draw_differences(ax, differences: Sequence[Mapping], labels: Mapping[str, str] | None = None,
                     paper: Mapping[tuple[str, str], float] | None = None) -> None:
    """Table 2's paired differences as intervals: one line per ``a - b`` (mean and interval in
    dB), the paper's difference as a cross where given, and 0 as a dashed line."""
    labels = labels or {}
    names = [f"{labels.get(d['a'], d['a'])} − {labels.get(d['b'], d['b'])}" for d in differences]
    y = np.arange(len(differences))
    for i, d in enumerate(differences):
        colour = "tab:green" if d["resolved"] else "0.5"
        ax.plot([d["low"], d["high"]], [i, i], color=colour, lw=3)
        ax.plot([d["mean"]], [i], "o", color=colour, label="this run (95% interval)" if i == 0 else None)
        if paper and (d["a"], d["b"]) in paper:
            ax.plot([paper[(d["a"], d["b"])]], [i], "x", color="tab:red", ms=9,
                    label="paper" if i == 0 else None)
    ax.axvline(0, color="k", ls="--", lw=1)
    ax.set_yticks(y)
    ax.set_yticklabels(names)
    ax.set_xlabel("PSNR difference (dB)")
    ax.legend(loc="best", fontsize=8)


def benchmark_gallery(samples: Sequence, count: int = 8, size: float = 2.2) -> plt.Figure:
    """The first ``count`` benchmark samples: each LR image (top) over the blur kernel ``k_h`` that
    made it (bottom), titled with its draw (``λ1, λ2`` standard deviations in HR pixels, ``θ``,
    kernel size, downsampler)."""
    shown = list(samples)[:count]
    fig, axes = plt.subplots(2, len(shown), figsize=(size * len(shown), 2 * size + 0.6), squeeze=False)
    for column, sample in enumerate(shown):
        d = sample.degradation
        _show(axes[0, column], sample.lr, f"{sample.name}\nLR {sample.lr.shape[-1]}x{sample.lr.shape[-2]} (x{d.scale:g})")
        axes[1, column].imshow(d.kernel().numpy(), cmap="magma", interpolation="nearest")
        axes[1, column].set_title(f"k {d.kernel_size}, λ {d.lambda1:.2f}/{d.lambda2:.2f}\n"
                                  f"θ {math.degrees(d.theta):.0f}°, {d.mode}", fontsize=8)
        axes[1, column].set_xticks([])
        axes[1, column].set_yticks([])
    fig.tight_layout()
    return fig


def draw_gains(ax, gains: Mapping[str, Mapping[float, Mapping]], labels: Mapping[str, str] | None = None,
               reference: str = "Bicubic") -> None:
    """Each method's mean PSNR gain over ``reference`` at each scale with its interval (from
    ``asbsr.lab.results.gains``): one colour per method, scales side by side."""
    labels = labels or {}
    methods = list(gains)
    width = 0.8 / max(len(methods), 1)
    scales = sorted({s for by_scale in gains.values() for s in by_scale})
    for index, method in enumerate(methods):
        x = np.arange(len(scales)) - 0.4 + width * (index + 0.5)
        mean = np.array([gains[method][s]["mean"] for s in scales])
        low = np.array([gains[method][s]["low"] for s in scales])
        high = np.array([gains[method][s]["high"] for s in scales])
        error = np.nan_to_num(np.stack([mean - low, high - mean]))
        ax.bar(x, mean, width, yerr=error, capsize=3, label=labels.get(method, method), color=f"C{index}")
    ax.axhline(0, color="k", lw=1)
    ax.set_xticks(np.arange(len(scales)))
    ax.set_xticklabels([f"x{s:g}" for s in scales])
    ax.set_ylabel(f"PSNR − {reference} (dB)")
    ax.legend(fontsize=8, ncol=2)
    ax.grid(axis="y", alpha=0.3)


def shave_figure(error: torch.Tensor, shaves: Mapping[str, int], scores: Mapping[str, float],
                 size: float = 4.5, corner: int = 24) -> plt.Figure:
    """The absolute Y error ``(H, W)`` (grey levels) of one output with the region each shave
    keeps outlined (``shaves``: label -> border pixels), titled with the PSNR of each: the
    whole image on the left, its top-left ``corner x corner`` pixels enlarged on the right, where
    the shaved strips are wide enough to see."""
    fig, (whole, zoom) = plt.subplots(1, 2, figsize=(2 * size + 1.6, size))
    vmax = float(np.percentile(error.numpy(), 99.5))
    height, width = error.shape
    for ax, view in ((whole, error), (zoom, error[:corner, :corner])):
        shown = ax.imshow(view.numpy(), cmap="magma", interpolation="nearest", vmax=vmax)
        for index, (label, shave) in enumerate(shaves.items()):
            ax.add_patch(Rectangle((shave - 0.5, shave - 0.5), width - 2 * shave, height - 2 * shave,
                                   fill=False, edgecolor=f"C{index + 2}", lw=1.5 if ax is whole else 2.5,
                                   label=f"{label}: {scores[label]:.3f} dB"))
        ax.set_xticks([])
        ax.set_yticks([])
    whole.add_patch(Rectangle((-0.5, -0.5), corner, corner, fill=False, edgecolor="white", lw=1, ls="--"))
    whole.set_title("the whole error map")
    zoom.set_title(f"its top-left {corner}x{corner} pixels: the shaved strips")
    zoom.legend(loc="lower right", fontsize=8)
    fig.colorbar(shown, ax=[whole, zoom], fraction=0.03, label="|Y error| (grey levels)")
    return fig


def draw_curves(ax, entries: Mapping[str, Mapping]) -> None:
    """Train-vs-validation curves of zoo models: ``entries`` maps a label to a manifest entry
    holding ``"curves"`` (``zoo_train.psnr_monitor``'s points and bicubic's two numbers). Solid:
    PSNR on the validation crops, dashed: on the training crops, dotted: bicubic's validation
    PSNR. A training curve that keeps rising while the validation curve falls is overfitting.
    Entries without curves are skipped; the axis says so when none has any."""
    drawn = 0
    for index, (label, entry) in enumerate(entries.items()):
        curves = entry.get("curves") or {}
        points = curves.get("points") or []
        if not points:
            continue
        colour = f"C{index % 10}"
        steps = [p["step"] for p in points]
        ax.plot(steps, [p["val_psnr"] for p in points], "-o", color=colour, ms=3, label=f"{label}: validation")
        ax.plot(steps, [p["train_psnr"] for p in points], "--", color=colour, label=f"{label}: training")
        if "bicubic" in curves:
            ax.axhline(curves["bicubic"]["val_psnr"], color=colour, ls=":", lw=1)
        drawn += 1
    if drawn:
        ax.set_xlabel("stage-2 step")
        ax.set_ylabel("PSNR (Y), dB")
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no curves recorded for these models", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_axis_off()
