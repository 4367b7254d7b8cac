"""The method on one page (the paper's Fig. 2), drawn with boxes and arrows for notebook 00.

``PIPELINE_BOXES`` names every box, where it sits and which part of the paper it is;
``PIPELINE_ARROWS`` says what flows between them. ``draw_pipeline`` draws both and returns the
figure and the text of every box, so a test can check the drawing shows the whole method.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

# name -> (x, y centre in figure units, label, colour). Stage 1 (E and M) is blue, the SR module
# green, the losses orange; the data is grey.
PIPELINE_BOXES = {
    "hr": (1.4, 1.4, "HR patch x", "0.85"),
    "lr": (1.4, 4.6, "LR input y\nEq. 1: (x ⊗ k_h)↓s + n", "0.85"),
    "haar": (4.0, 6.2, "Haar DWT\nLH, HL, HH bands", "#c6dbef"),
    "e": (6.6, 6.2, "E: implicit degradation\npredictor (§3.1)", "#9ecae1"),
    "rep": (9.2, 6.2, "representation r", "#c6dbef"),
    "m": (11.8, 6.2, "M: explicit kernel\nestimator (§3.2)", "#9ecae1"),
    "k": (14.4, 6.2, "k̂_l (21×21)", "#c6dbef"),
    "edsr": (6.6, 3.0, "EDSR, residual blocks\nmodulated by r (§3.3)", "#a1d99b"),
    "lte": (9.2, 3.0, "LTE: coefficients,\nfrequencies, phase", "#a1d99b"),
    "query": (9.2, 1.4, "query x_q, cell\n(any scale s)", "0.9"),
    "sr": (11.8, 3.0, "SR output x̂", "#c7e9c0"),
    "down": (11.8, 4.6, "scale-1 queries:\nx̂↓s on y's grid", "#c7e9c0"),
    "super": (14.4, 1.4, "L_super = |x̂ − x|₁\n(Eq. 5)", "#fdd0a2"),
    "cycle": (14.4, 4.6, "L_cycle = |x̂↓s ⊗ k̂_l − y|₁\n(Eq. 6)", "#fdd0a2"),
}
# (from, to, label on the arrow, bend: 0 straight, > 0 bowed below a left-to-right arrow)
PIPELINE_ARROWS = [
    ("hr", "lr", "degrade", 0.0), ("lr", "haar", "", 0.0), ("haar", "e", "", 0.0), ("e", "rep", "", 0.0),
    ("rep", "m", "", 0.0), ("m", "k", "", 0.0), ("lr", "edsr", "", 0.0), ("rep", "edsr", "modulates", 0.0),
    ("edsr", "lte", "", 0.0), ("query", "lte", "", 0.0), ("lte", "sr", "", 0.0), ("lte", "down", "scale 1", 0.0),
    ("sr", "super", "", 0.0), ("hr", "super", "target", 0.1), ("down", "cycle", "", 0.0),
    ("k", "cycle", "⊗", 0.0),
]  # y itself, the other input of L_cycle, is in its box's formula: an arrow would cross the page
HALF_W, HALF_H = 1.1, 0.5  # half the size of a box


def _edge(x: float, y: float, towards_x: float, towards_y: float, gap: float = 0.06) -> tuple[float, float]:
    """Where the line from a box's centre to another point leaves the box (plus a small gap)."""
    dx, dy = towards_x - x, towards_y - y
    t = min(HALF_W / abs(dx) if dx else float("inf"), HALF_H / abs(dy) if dy else float("inf"))
    length = (dx * dx + dy * dy) ** 0.5
    t += gap / length
    return x + t * dx, y + t * dy


def draw_pipeline(width: float = 16.0, height: float = 6.0):
    """Fig. 2 of the paper as boxes and arrows. Returns ``(figure, {box name: its text})``."""
    fig, ax = plt.subplots(figsize=(width, height))
    ax.set_xlim(0.0, 15.8)
    ax.set_ylim(-0.1, 7.3)
    ax.axis("off")
    texts = {}
    for name, (x, y, label, colour) in PIPELINE_BOXES.items():
        ax.add_patch(FancyBboxPatch((x - HALF_W, y - HALF_H), 2 * HALF_W, 2 * HALF_H,
                                    boxstyle="round,pad=0.04", facecolor=colour, edgecolor="0.3",
                                    linewidth=1))
        texts[name] = ax.text(x, y, label, ha="center", va="center", fontsize=8.5).get_text()
    for start, end, label, bend in PIPELINE_ARROWS:
        (x0, y0, *_), (x1, y1, *_) = PIPELINE_BOXES[start], PIPELINE_BOXES[end]
        a, b = _edge(x0, y0, x1, y1), _edge(x1, y1, x0, y0)
        ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=12, color="0.35",
                                     linewidth=1, connectionstyle=f"arc3,rad={bend}"))
        if label:
            mx, my = (a[0] + b[0]) / 2, (a[1] + b[1]) / 2
            my += -bend * ((b[0] - a[0]) ** 2 + (b[1] - a[1]) ** 2) ** 0.5 / 2 + 0.15
            ax.text(mx + 0.12, my, label, ha="left", fontsize=8, color="0.25", style="italic")
    ax.text(2.9, 7.0, "stage 1: E and M learn from L_cl (SimSiam, Eq. 3) + L_k", fontsize=9.5,
            color="#3182bd")
    ax.text(2.9, 0.0, "stage 2: E and M frozen; the SR module learns from L_SR = L_super + 0.1 "
            "L_cycle (Eq. 7)", fontsize=9.5, color="#31a354")
    return fig, texts
