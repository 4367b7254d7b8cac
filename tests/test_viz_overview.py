"""The drawing of Fig. 2 shows every part of the method and nothing dangling."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

from asbsr.lab.viz.overview import PIPELINE_ARROWS, PIPELINE_BOXES, _edge, draw_pipeline  # noqa: E402


def test_every_arrow_joins_two_boxes_and_every_box_is_joined():
    joined = {end for start, stop, _, _ in PIPELINE_ARROWS for end in (start, stop)}
    assert joined == set(PIPELINE_BOXES)


def test_the_figure_names_the_components_and_the_losses():
    fig, texts = draw_pipeline()
    text = " ".join(texts.values())
    for part in ("E: implicit", "M: explicit", "modulated", "LTE", "Eq. 1", "Eq. 5", "Eq. 6", "Haar"):
        assert part in text, part
    assert len(fig.axes[0].patches) == len(PIPELINE_BOXES) + len(PIPELINE_ARROWS)


def test_arrows_start_on_the_edge_of_their_box():
    x, y = _edge(0.0, 0.0, 10.0, 0.0, gap=0.0)
    assert (x, y) == (1.1, 0.0)
    x, y = _edge(0.0, 0.0, 0.0, -4.0, gap=0.0)
    assert (x, y) == (0.0, -0.5)
