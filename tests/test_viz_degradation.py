"""Tests of asbsr.lab.viz.degradation: the figures of notebook 01 show what they are given."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from asbsr.degradation import degrade, gaussian_kernel  # noqa: E402
from asbsr.wavelet import haar_high_bands  # noqa: E402
from asbsr.lab.viz.degradation import (  # noqa: E402
    band_magnitudes, degradation_grid, degradation_panel, kernel_gallery, kernel_hr_vs_lr,
    kernel_widths,
)

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def shown(ax) -> np.ndarray:
    """The array of the (first) image drawn on ``ax``."""
    assert len(ax.images) == 1
    return np.asarray(ax.images[0].get_array())


def random_image(height: int, width: int, seed: int) -> torch.Tensor:
    return torch.rand(3, height, width, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- kernel_widths

@pytest.mark.parametrize("l1, l2, theta", [(2.5, 1.0, 0.7), (1.0, 3.0, 2.0), (1.5, 1.5, 0.0)])
def test_kernel_widths_recovers_the_standard_deviations_of_a_wide_window_gaussian(l1, l2, theta):
    widths = kernel_widths(gaussian_kernel(41, l1, l2, theta))
    np.testing.assert_allclose(widths.numpy(), sorted([l1, l2], reverse=True), rtol=1e-3)


def test_kernel_widths_of_a_shifted_delta_and_of_a_two_point_kernel():
    delta = torch.zeros(9, 9)
    delta[2, 6] = 1.0  # off centre: widths are about the kernel's own mean, so still 0
    np.testing.assert_allclose(kernel_widths(delta).numpy(), [0.0, 0.0], atol=1e-12)
    pair = torch.zeros(9, 9)
    pair[4, 2] = pair[4, 6] = 0.5  # +-2 pixels along x: std 2 along x, 0 across
    np.testing.assert_allclose(kernel_widths(pair).numpy(), [2.0, 0.0], atol=1e-12)
    with pytest.raises(ValueError, match="square"):
        kernel_widths(torch.ones(3, 5))


# ---------------------------------------------------------------- kernel_gallery

def test_kernel_gallery_draws_each_kernel_on_a_common_window_with_its_title():
    kernels = [gaussian_kernel(size, 1.0 + i, 0.5, 0.3 * i) for i, size in enumerate((7, 11, 21, 9, 15))]
    titles = [f"kernel {i}, size {k.shape[-1]}" for i, k in enumerate(kernels)]
    fig = kernel_gallery(kernels, titles, ncols=3, suptitle="five kernels")
    assert len(fig.axes) == 5  # the sixth grid cell is removed
    for ax, kernel, title in zip(fig.axes, kernels, titles):
        assert ax.get_title() == title
        np.testing.assert_array_equal(shown(ax), kernel.numpy())
        half = kernel.shape[-1] / 2
        assert ax.images[0].get_extent() == [-half, half, half, -half]
        assert ax.get_xlim() == (-10.5, 10.5) and ax.get_ylim() == (10.5, -10.5)
    assert fig._suptitle.get_text() == "five kernels"


def test_kernel_gallery_accepts_a_stacked_tensor_and_rejects_mismatched_titles():
    stacked = torch.stack([gaussian_kernel(5, 1.0, 1.0, 0.0), gaussian_kernel(5, 0.5, 2.0, 1.0)])
    fig = kernel_gallery(stacked, ["a", "b"])
    assert len(fig.axes) == 2
    np.testing.assert_array_equal(shown(fig.axes[1]), stacked[1].numpy())
    with pytest.raises(ValueError, match="titles"):
        kernel_gallery(stacked, ["only one"])


# ---------------------------------------------------------------- degradation_grid

def test_degradation_grid_draws_every_image_over_the_hr_extent():
    hr = random_image(24, 20, 0)
    lr_a, lr_b, lr_c = random_image(12, 10, 1), random_image(8, 7, 2), random_image(10, 8, 3)
    rows = [[("a x2", lr_a), ("b x3", lr_b)], [("c x2.4", lr_c)]]
    fig = degradation_grid(hr, rows, row_labels=["first", "second"])
    assert len(fig.axes) == 5  # 2 rows x 3 columns, one empty cell removed
    first_row, second_row = fig.axes[:3], fig.axes[3:]
    for ax, image in zip([first_row[0], *first_row[1:], second_row[0], second_row[1]],
                         [hr, lr_a, lr_b, hr, lr_c]):
        np.testing.assert_allclose(shown(ax), image.permute(1, 2, 0).numpy())
        assert ax.images[0].get_extent() == [0, 20, 24, 0]  # same display size for all
        assert ax.get_title().endswith(f"{image.shape[1]}x{image.shape[2]} px")
    assert first_row[1].get_title().startswith("a x2")
    assert first_row[0].get_ylabel() == "first" and second_row[0].get_ylabel() == "second"
    with pytest.raises(ValueError, match="row labels"):
        degradation_grid(hr, rows, row_labels=["only one"])


# ---------------------------------------------------------------- degradation_panel

def test_band_magnitudes_average_each_band_over_the_colour_channels():
    high = torch.arange(9 * 2 * 3, dtype=torch.float32).view(9, 2, 3) - 20
    bands = band_magnitudes(high)
    assert bands.shape == (3, 2, 3)
    for band in range(3):  # channel 3c + band holds colour c's band
        expected = (high[band].abs() + high[3 + band].abs() + high[6 + band].abs()) / 3
        torch.testing.assert_close(bands[band], expected)
    with pytest.raises(ValueError, match="9"):
        band_magnitudes(torch.zeros(3, 4, 4))


def test_degradation_panel_shows_hr_kernel_lr_and_the_three_bands():
    hr = random_image(40, 40, 4)
    kernel = gaussian_kernel(21, 3.0, 1.0, 0.5)
    lr = degrade(hr[None], kernel, 2.5, "area")
    high = haar_high_bands(lr)[0]
    fig = degradation_panel(hr, kernel, lr[0], high, title="λ1=3.00, x2.50, area")
    axes = fig.axes
    assert len(axes) == 6
    assert fig._suptitle.get_text() == "λ1=3.00, x2.50, area"
    np.testing.assert_allclose(shown(axes[0]), hr.permute(1, 2, 0).numpy())
    np.testing.assert_array_equal(shown(axes[1]), kernel.numpy())
    assert "widths 3.00, 1.00" in axes[1].get_title()
    np.testing.assert_allclose(shown(axes[2]), lr[0].permute(1, 2, 0).numpy())
    assert axes[2].get_title().endswith("16x16 px")  # round(40 / 2.5)
    bands = band_magnitudes(high)
    for ax, band, name in zip(axes[3:], bands, ("LH", "HL", "HH")):
        np.testing.assert_allclose(shown(ax), band.numpy())
        assert name in ax.get_title() and f"mean {band.mean():.4f}" in ax.get_title()
        assert ax.images[0].get_clim() == (0, 0.15)


# ---------------------------------------------------------------- kernel_hr_vs_lr

def test_kernel_hr_vs_lr_rows_per_scale_with_references_and_residuals():
    k_h = gaussian_kernel(15, 3.0, 1.0, 0.4)
    scales = [2.5, 4.0]
    k_l = torch.stack([gaussian_kernel(21, 3.0 / s + 0.1, 1.0 / s + 0.1, 0.4) for s in scales])
    references = torch.stack([gaussian_kernel(21, 3.0 / s, 1.0 / s, 0.4) for s in scales])
    maps = [{"good": torch.full((6, 6), 0.01), "bad": torch.full((6, 6), 0.2)},
            {"good": torch.full((4, 4), 0.02), "bad": torch.full((4, 4), 0.1)}]
    fig = kernel_hr_vs_lr(k_h, k_l, scales, references=references, residuals=maps)
    axes = fig.axes
    assert len(axes) == 2 * 5
    for row, s in enumerate(scales):
        h_ax, ref_ax, l_ax, good_ax, bad_ax = axes[5 * row: 5 * row + 5]
        np.testing.assert_array_equal(shown(h_ax), k_h.numpy())
        np.testing.assert_array_equal(shown(ref_ax), references[row].numpy())
        np.testing.assert_array_equal(shown(l_ax), k_l[row].numpy())
        assert f"x{s:g}" in l_ax.get_title() and f"by {s:g}" in ref_ax.get_title()
        widths = kernel_widths(k_l[row])
        assert f"widths {widths[0]:.2f}, {widths[1]:.2f}" in l_ax.get_title()
        np.testing.assert_allclose(shown(bad_ax), maps[row]["bad"].numpy())
        assert good_ax.get_title() == "good" and bad_ax.get_title() == "bad"
        # one grey scale for all residual maps: the largest 99.5th percentile
        assert good_ax.images[0].get_clim() == bad_ax.images[0].get_clim()
        assert math.isclose(bad_ax.images[0].get_clim()[1], 0.2, rel_tol=1e-6)
        # all kernels share the 21-pixel window
        assert h_ax.get_xlim() == l_ax.get_xlim() == (-10.5, 10.5)


def test_kernel_hr_vs_lr_without_extras_and_with_wrong_shapes():
    k_h = gaussian_kernel(9, 2.0, 1.0, 0.0)
    k_l = torch.stack([gaussian_kernel(21, 1.0, 0.5, 0.0)] * 3)
    fig = kernel_hr_vs_lr(k_h, k_l, [1.5, 2.0, 3.0])
    assert len(fig.axes) == 3 * 2 and fig._suptitle is None
    with pytest.raises(ValueError, match="scales"):
        kernel_hr_vs_lr(k_h, k_l, [1.5, 2.0])
    with pytest.raises(ValueError, match="references"):
        kernel_hr_vs_lr(k_h, k_l, [1.5, 2.0, 3.0], references=k_l[:2])
