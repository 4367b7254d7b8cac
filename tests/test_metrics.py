"""Tests of asbsr.metrics against scikit-image and closed-form answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from asbsr.degradation import lr_size
from asbsr.metrics import crop_hr_to_lr_grid, psnr_y, quantize, rgb_to_y, shave_for, ssim_y


def oracle_y(image: torch.Tensor) -> np.ndarray:
    """The protocol written with numpy: 8-bit rounding, then MATLAB's luma on [0, 1] RGB."""
    rgb = np.rint(np.clip(image.numpy().astype(np.float64), 0, 1) * 255).astype(np.uint8)
    r, g, b = rgb.astype(np.float64) / 255
    return 16 + 65.481 * r + 128.553 * g + 24.966 * b


def pair(height: int, width: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    hr = torch.rand(3, height, width, generator=gen)
    sr = (hr + 0.08 * torch.randn(3, height, width, generator=gen)).clamp(0, 1)
    return sr, hr


def test_rgb_to_y_matches_skimage():
    image = torch.rand(3, 5, 6, dtype=torch.float64)
    expected = rgb2ycbcr(image.permute(1, 2, 0).numpy())[..., 0]
    np.testing.assert_allclose(rgb_to_y(image).numpy(), expected, atol=1e-10)
    assert rgb_to_y(torch.rand(2, 3, 4, 4)).shape == (2, 4, 4)
    assert rgb_to_y(torch.zeros(3, 1, 1)).item() == 16
    assert rgb_to_y(torch.ones(3, 1, 1, dtype=torch.float64)).item() == pytest.approx(235)
    with pytest.raises(ValueError):
        rgb_to_y(torch.rand(4, 5, 5))


def test_quantize():
    x = torch.rand(3, 20, 20, dtype=torch.float64)
    np.testing.assert_array_equal(quantize(x).numpy() * 255, np.rint(x.numpy() * 255))
    assert quantize(torch.tensor([-0.2, 1.3, 0.5 / 255, 1.5 / 255])).mul(255).tolist() == [0, 255, 1, 2]


@pytest.mark.parametrize("height, width, shave", [(24, 24, 0), (23, 31, 3), (40, 17, 2)])
def test_psnr_and_ssim_match_skimage(height, width, shave):
    sr, hr = pair(height, width)
    sr_y, hr_y = oracle_y(sr), oracle_y(hr)
    crop = (slice(shave, height - shave), slice(shave, width - shave))
    expected_psnr = peak_signal_noise_ratio(hr_y[crop], sr_y[crop], data_range=255)
    expected_ssim = structural_similarity(hr_y[crop], sr_y[crop], data_range=255, gaussian_weights=True,
                                          sigma=1.5, use_sample_covariance=False)
    assert psnr_y(sr, hr, shave) == pytest.approx(expected_psnr, abs=1e-9)
    assert ssim_y(sr, hr, shave) == pytest.approx(expected_ssim, abs=1e-9)
    assert psnr_y(sr[None], hr[None], shave) == psnr_y(sr, hr, shave)  # (1, 3, H, W) is accepted
    # scikit-image's default SSIM is a different number: the arguments matter.
    assert abs(structural_similarity(hr_y[crop], sr_y[crop], data_range=255) - expected_ssim) > 1e-4


def test_identical_images_and_a_constant_offset():
    gen = torch.Generator().manual_seed(1)
    levels = torch.randint(0, 255, (3, 16, 16), generator=gen).double()
    hr = levels / 255
    assert psnr_y(hr, hr) == math.inf and ssim_y(hr, hr) == pytest.approx(1.0)
    # One grey level more in R, G and B raises Y by exactly 65.481 + 128.553 + 24.966 = 219 / 255.
    sr = (levels + 1) / 255
    assert psnr_y(sr, hr) == pytest.approx(10 * math.log10(255 ** 2 / (219 / 255) ** 2), abs=1e-9)
    assert psnr_y(sr.float(), hr.float()) == pytest.approx(20 * math.log10(255 ** 2 / 219), abs=1e-6)
    # Differences smaller than half a grey level vanish in the 8-bit rounding.
    assert psnr_y((hr + 0.4 / 255).clamp(0, 1), hr) == math.inf


def test_metric_errors():
    sr, hr = pair(20, 20)
    with pytest.raises(ValueError, match=r"\(3, 20, 20\).*\(3, 20, 19\)"):
        psnr_y(sr, hr[..., :19])
    with pytest.raises(ValueError, match="11x11"):
        ssim_y(sr, hr, shave=5)
    with pytest.raises(ValueError, match="shave"):
        psnr_y(sr, hr, shave=-1)
    with pytest.raises(ValueError, match="shave"):
        psnr_y(sr, hr, shave=1.5)
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        psnr_y(sr[:2], hr[:2])


def test_shave_for():
    assert [shave_for(s) for s in (1, 2.0, 3, 3.6, 4, 1.01)] == [1, 2, 3, 4, 4, 2]
    for bad in (0, -3, float("nan"), "4"):
        with pytest.raises(ValueError):
            shave_for(bad)


def test_crop_hr_to_lr_grid():
    hr = torch.rand(2, 3, 100, 37)
    out = crop_hr_to_lr_grid(hr, 3.0)
    assert out.shape == (2, 3, 99, 36) and torch.equal(out, hr[..., :99, :36])
    assert crop_hr_to_lr_grid(torch.rand(3, 7, 7), 4.0).shape == (3, 4, 4)  # round(7/4) * 4 = 8 > 7
    for side in range(8, 70):
        for scale in (1.0, 1.5, 2.0, 2.3, 3.0, 3.6, 4.0):
            cropped = crop_hr_to_lr_grid(torch.zeros(1, side, side), scale).shape[-1]
            lr_side = lr_size((cropped, cropped), scale)[0]
            assert cropped <= side and round(lr_side * scale) == cropped
            if round(round(side / scale) * scale) <= side:  # the DESIGN formula, when it fits
                assert cropped == round(round(side / scale) * scale)
            else:
                assert lr_side == round(side / scale) - 1
    with pytest.raises(ValueError):
        crop_hr_to_lr_grid(torch.rand(3, 2, 9), 8.0)
