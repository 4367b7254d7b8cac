"""Tests of asbsr.wavelet against PyWavelets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from asbsr.wavelet import haar_dwt, haar_high_bands, haar_idwt

pywt = pytest.importorskip("pywt")


def pywt_bands(x: np.ndarray, mode: str = "symmetric") -> tuple[np.ndarray, list[np.ndarray]]:
    """pywt.dwt2 over the last two axes: cA and [cH, cV, cD]."""
    approx, (horizontal, vertical, diagonal) = pywt.dwt2(x, "haar", mode=mode, axes=(-2, -1))
    return approx, [horizontal, vertical, diagonal]


@pytest.mark.parametrize("dtype, atol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_haar_dwt_matches_pywt(dtype, atol):
    x = torch.rand(2, 3, 8, 10, generator=torch.Generator().manual_seed(0), dtype=dtype)
    low, high = haar_dwt(x)
    assert low.shape == (2, 3, 4, 5) and high.shape == (2, 9, 4, 5)
    assert low.dtype == high.dtype == dtype
    approx, details = pywt_bands(x.double().numpy())
    np.testing.assert_allclose(low.double().numpy(), approx, atol=atol)
    for channel in range(3):
        for band in range(3):  # LH, HL, HH = pywt's cH, cV, cD, with the same sign
            ours = high[:, 3 * channel + band].double().numpy()
            np.testing.assert_allclose(ours, details[band][:, channel], atol=atol)


def test_haar_odd_sizes_reflect_like_pywt():
    x = torch.rand(1, 2, 7, 9, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    low, high = haar_dwt(x)
    assert low.shape == (1, 2, 4, 5) and high.shape == (1, 6, 4, 5)
    approx, details = pywt_bands(x.numpy(), mode="reflect")
    np.testing.assert_allclose(low.numpy(), approx, atol=1e-12)
    for band in range(3):
        np.testing.assert_allclose(high[:, band::3].numpy(), details[band], atol=1e-12)
    torch.testing.assert_close(haar_idwt(low, high, size=(7, 9)), x)
    with pytest.raises(ValueError, match="2x2"):
        haar_dwt(torch.rand(1, 1, 1, 6))


def test_haar_inverse_and_energy():
    x = torch.rand(3, 4, 6, 12, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    low, high = haar_dwt(x)
    torch.testing.assert_close(haar_idwt(low, high), x, atol=1e-13, rtol=0)
    # Orthonormal filters: the transform preserves the energy (Parseval).
    energy = low.pow(2).sum() + high.pow(2).sum()
    torch.testing.assert_close(energy, x.pow(2).sum())
    x32 = x.float()
    torch.testing.assert_close(haar_idwt(*haar_dwt(x32)), x32, atol=1e-6, rtol=0)


def test_haar_band_order_and_high_bands():
    x = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(3))
    high = haar_high_bands(x)
    assert torch.equal(high, haar_dwt(x)[1])
    for channel in range(3):  # channels 3c..3c+2 are the bands of input channel c alone
        alone = haar_high_bands(x[:, channel:channel + 1])
        torch.testing.assert_close(high[:, 3 * channel:3 * channel + 3], alone)
    # A constant image has no detail; a horizontal edge lives in LH only.
    assert haar_high_bands(torch.ones(1, 1, 4, 4)).abs().max() == 0
    edge = torch.zeros(1, 1, 4, 4)
    edge[..., ::2, :] = 1  # rows alternate 1, 0: horizontal stripes
    bands = haar_high_bands(edge)
    assert bands[:, 0].abs().min() == 1 and bands[:, 1:].abs().max() == 0


def test_haar_is_differentiable():
    x = torch.rand(1, 2, 4, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: haar_dwt(t), (x,), fast_mode=True)
    low = torch.rand(1, 2, 2, 3, dtype=torch.float64, requires_grad=True)
    high = torch.rand(1, 6, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(haar_idwt, (low, high), fast_mode=True)


def test_haar_errors():
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        haar_dwt(torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="high"):
        haar_idwt(torch.rand(1, 3, 4, 4), torch.rand(1, 6, 4, 4))
