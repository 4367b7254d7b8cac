"""The notebooks' figures show what they say: grids, crops and zooms."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import torch  # noqa: E402

from asbsr.lab.viz import results, stage1  # noqa: E402


def test_figure5_is_a_grid_with_every_output_once():
    outputs = {f"m{i}": torch.rand(3, 12, 12) for i in range(8)}
    fig = results.side_by_side(torch.rand(3, 3, 3), outputs, size=1.0, columns=4)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(fig.axes) == 12 and len(shown) == 9  # 3 rows of 4, three blank
    assert [ax.get_title().split()[0] for ax in shown[1:]] == list(outputs)


def test_kernels_are_cropped_to_their_centre_with_a_colour_bar_per_row():
    kernel = torch.zeros(21, 21)
    kernel[10, 10] = 1.0
    assert stage1.central(kernel, 9).shape == (9, 9) and stage1.central(kernel, 9)[4, 4] == 1.0
    assert stage1.central(kernel, 25) is kernel
    rows = {"a": torch.rand(3, 21, 21), "b": torch.rand(3, 21, 21)}
    fig = stage1.show_kernel_rows(rows, ["x1", "x2", "x3"])
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 6 and all(ax.images[0].get_array().shape == (9, 9) for ax in panels)
    assert len(fig.axes) == 6 + 2  # one colour bar a row


def test_the_shave_figure_zooms_on_a_corner():
    error = torch.rand(40, 50)
    fig = results.shave_figure(error, {"shave 4": 4, "shave 1": 1}, {"shave 4": 30.0, "shave 1": 29.0}, corner=12)
    whole, zoom = fig.axes[:2]
    assert whole.images[0].get_array().shape == (40, 50) and zoom.images[0].get_array().shape == (12, 12)


def test_stage1_curves_are_titled_with_the_losses_names():
    fig = stage1.plot_training_curves({"contrastive": [1.0, 0.5], "kernel": [0.2, 0.1]}, ["contrastive", "kernel"])
    assert "L}_{cl}" in fig.axes[0].get_title() and "L}_k" in fig.axes[1].get_title()
