"""Tests of asbsr.lab.analysis: the probes against brute force / numpy, the labelled patches against
the degradation they claim, the Haar band energies against pywavelets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import pywt
import torch

from asbsr.config import DegradationConfig, make_config
from asbsr.degradation import Degradation, blur, degrade, gaussian_kernel, lr_space_kernel, resize
from asbsr.metrics import psnr_y
from asbsr.sampling import pad_kernel
from asbsr.lab import analysis




def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- PCA, R², probes

def test_pca_matches_numpy_eigendecomposition():
    g = _generator()
    x = torch.randn(200, 5, generator=g, dtype=torch.float64) * torch.tensor([5.0, 2.0, 1.0, 0.5, 0.1],
                                                                           dtype=torch.float64)
    x = x @ torch.linalg.qr(torch.randn(5, 5, generator=g, dtype=torch.float64))[0]  # rotate
    points, explained = analysis.pca_2d(x)
    centred = (x - x.mean(0)).numpy()
    values, vectors = np.linalg.eigh(centred.T @ centred)
    order = np.argsort(values)[::-1]
    np.testing.assert_allclose(explained.numpy(), values[order[:2]] / values.sum(), rtol=1e-10)
    expected = centred @ vectors[:, order[:2]]
    np.testing.assert_allclose(np.abs(points.numpy()), np.abs(expected), atol=1e-9)  # up to sign
    assert explained[0] > 0.8


def test_r2_score_definition():
    t = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert analysis.r2_score(t, t) == 1.0
    assert analysis.r2_score(torch.full_like(t, t.mean()), t) == 0.0
    p = torch.tensor([1.5, 2.0, 2.0, 5.0])
    assert math.isclose(analysis.r2_score(p, t), 1 - (0.25 + 0 + 1 + 1) / 5.0)


def test_split_is_seeded_disjoint_and_complete():
    a_train, a_test = analysis.split_indices(50, 0.7, seed=3)
    b_train, b_test = analysis.split_indices(50, 0.7, seed=3)
    assert torch.equal(a_train, b_train) and torch.equal(a_test, b_test)
    assert len(a_train) == 35 and sorted(torch.cat([a_train, a_test]).tolist()) == list(range(50))
    with pytest.raises(ValueError):
        analysis.split_indices(50, 1.0, seed=0)


def test_ridge_leave_one_out_equals_refitting_without_each_sample():
    g = _generator(1)
    x = torch.randn(12, 4, generator=g, dtype=torch.float64)
    t = torch.randn(12, generator=g, dtype=torch.float64)
    alpha = 0.7
    weights, loo = analysis.ridge_fit(x, t, alpha)
    xn, tn = x.numpy(), t.numpy()
    np.testing.assert_allclose(weights.numpy(), np.linalg.solve(xn.T @ xn + alpha * np.eye(4), xn.T @ tn), rtol=1e-10)
    for i in range(12):
        keep = torch.arange(12) != i
        xi, ti = x[keep], t[keep]
        w = torch.linalg.solve(xi.T @ xi + alpha * torch.eye(4, dtype=torch.float64), xi.T @ ti)
        assert math.isclose(float(loo[i]), float(t[i] - x[i] @ w), rel_tol=1e-9, abs_tol=1e-12)


def test_probes_read_an_encoded_label_and_not_a_missing_one():
    g = _generator(2)
    target = torch.rand(300, generator=g, dtype=torch.float64) * 4
    noise = torch.randn(300, 10, generator=g, dtype=torch.float64)
    encoded = torch.cat([target[:, None] + 0.05 * torch.randn(300, 1, generator=g, dtype=torch.float64), noise], 1)
    linear = analysis.ridge_probe(encoded, target, seed=0)
    assert linear["r2"] > 0.95 and linear["r2"] <= 1.0
    assert analysis.knn_probe(encoded[:, :1], target, k=5, seed=0)["r2"] > 0.95
    blind = analysis.ridge_probe(noise, target, seed=0)
    assert blind["r2"] < 0.1
    assert blind["alpha"] == max(analysis.RIDGE_ALPHAS)  # LOO picks the strongest penalty for noise


def test_knn_probe_matches_a_brute_force_loop():
    g = _generator(4)
    x = torch.randn(40, 3, generator=g, dtype=torch.float64)
    t = torch.randn(40, generator=g, dtype=torch.float64)
    train, test = analysis.split_indices(40, 0.7, seed=5)
    mean, std = x[train].mean(0), x[train].std(0)
    xs = ((x - mean) / std).numpy()
    predicted = []
    for i in test.tolist():
        distances = [(float(np.sum((xs[i] - xs[j]) ** 2)), j) for j in train.tolist()]
        nearest = [j for _, j in sorted(distances)[:3]]
        predicted.append(float(t[nearest].mean()))
    expected = analysis.r2_score(torch.tensor(predicted, dtype=torch.float64), t[test])
    assert math.isclose(analysis.knn_probe(x, t, k=3, seed=5)["r2"], expected, rel_tol=1e-9)


# ---------------------------------------------------------------- Haar bands

def test_band_energies_match_pywavelets():
    x = torch.rand(2, 3, 10, 12, generator=_generator(), dtype=torch.float64)
    energies = analysis.band_energies(x)
    for b in range(2):
        expected = np.zeros(4)
        for c in range(3):
            low, (h, v, d) = pywt.dwt2(x[b, c].numpy(), "haar")
            expected += np.array([np.mean(low ** 2), np.mean(h ** 2), np.mean(v ** 2), np.mean(d ** 2)]) / 3
        np.testing.assert_allclose(energies[b].numpy(), expected, rtol=1e-10)


# ---------------------------------------------------------------- labelled patches

def test_degraded_patches_are_eq1_of_their_crop_with_eq4_kernels():
    # The image is exactly one HR crop large, so the crop is the whole image.
    image = torch.rand(3, 40, 40, generator=_generator(7))
    degradations = [Degradation(9, 1.5, 0.7, 0.3, "bicubic", 2.5), Degradation(7, 0.8, 0.8, 0.0, "area", 2.5)]
    patches = analysis.degraded_patches([("only", image)], degradations, 16, _generator(), kernel_size=21)
    for i, d in enumerate(degradations):
        expected = degrade(image[None], d.kernel(), d.scale, d.mode, size=(16, 16))[0]
        torch.testing.assert_close(patches.lr[i], expected)
        torch.testing.assert_close(patches.clean[i], resize(image[None], (16, 16), d.mode).clamp(0, 1)[0])
        torch.testing.assert_close(patches.k_h[i], pad_kernel(d.kernel(), 21))
    torch.testing.assert_close(patches.k_l, lr_space_kernel(patches.clean, patches.lr, size=21))
    assert patches.sources == ["only", "only"] and patches.degradations == degradations
    with pytest.raises(ValueError):  # a 41-pixel crop does not fit a 40-pixel image
        analysis.degraded_patches([("only", image)], [Degradation(7, 1, 1, 0, "area", 2.5625)], 16, _generator())


def test_labelled_patches_are_seeded_and_labelled():
    images = [("a", torch.rand(3, 70, 80, generator=_generator(1))), ("b", torch.rand(3, 64, 64, generator=_generator(2)))]
    cfg = DegradationConfig(kernel_sizes=(7, 9, 11))
    one = analysis.labelled_patches(images, 6, 16, cfg, _generator(9))
    two = analysis.labelled_patches(images, 6, 16, cfg, _generator(9))
    assert torch.equal(one.lr, two.lr) and one.degradations == two.degradations
    assert one.lr.shape == (6, 3, 16, 16) and one.k_l.shape == one.k_h.shape == (6, 21, 21)
    assert float(one.lr.min()) >= 0 and float(one.lr.max()) <= 1
    labels = analysis.degradation_labels(one.degradations)
    for i, d in enumerate(one.degradations):
        assert 1.0 <= d.scale <= 4.0 and d.kernel_size in (7, 9, 11)
        assert math.isclose(float(labels["blur width"][i]), (d.lambda1 + d.lambda2) / 2)
        assert math.isclose(float(labels["scale"][i]), d.scale)
        assert math.isclose(float(labels["LR blur width"][i]), (d.lambda1 + d.lambda2) / (2 * d.scale))


def test_evaluation_patches_come_from_the_held_out_photos():
    config = make_config("smoke")
    one = analysis.evaluation_patches(config, 3, seed=11)
    two = analysis.evaluation_patches(config, 3, seed=11)
    assert torch.equal(one.lr, two.lr)
    assert one.lr.shape == (3, 3, config.stage1.patch_size, config.stage1.patch_size)
    from asbsr.data import image_paths
    assert set(one.sources) <= {p.stem for p in image_paths(config.data.val)}


def test_representations_use_eval_mode_and_restore_the_mode():
    from asbsr.models.predictor import DegradationEncoder
    torch.manual_seed(0)
    encoder = DegradationEncoder("haar", dim=8).train()
    lr = torch.rand(5, 3, 16, 16, generator=_generator())
    whole = analysis.representations(encoder, lr)
    parts = torch.cat([analysis.representations(encoder, lr[:2]), analysis.representations(encoder, lr[2:])])
    torch.testing.assert_close(whole, parts)  # independent of the batch: BatchNorm in eval mode
    assert encoder.training and whole.shape == (5, 8) and not whole.requires_grad


# ---------------------------------------------------------------- Fig. 4 helpers and checks

def test_fixed_kernel_series_applies_one_kernel_at_every_scale():
    hr = torch.rand(3, 60, 60, generator=_generator(3))
    kernel = gaussian_kernel(11, 1.1, 2.5, math.radians(65))
    views = analysis.fixed_kernel_series(hr, kernel, [2.2, 1.1, 3.0], "bicubic", kernel_size=21)
    assert [v.scale for v in views] == [2.2, 1.1, 3.0]
    for v in views:
        torch.testing.assert_close(v.lr, degrade(hr[None], kernel, v.scale, "bicubic"))
        assert v.clean.shape == v.lr.shape and v.lr.shape[-1] == round(60 / v.scale)
        torch.testing.assert_close(v.k_l, lr_space_kernel(v.clean, v.lr, size=21)[0])


def test_kernel_spread_of_gaussians_and_delta():
    k = gaussian_kernel(41, 1.5, 2.5, 0.7)
    assert math.isclose(float(analysis.kernel_spread(k[None])[0]), math.hypot(1.5, 2.5), rel_tol=1e-3)
    delta = pad_kernel(torch.ones(1, 1), 21)
    assert float(analysis.kernel_spread(delta[None])[0]) == 0.0
    shifted = torch.roll(delta, 3, dims=1)  # spread is about the kernel's own centre of mass
    assert float(analysis.kernel_spread(shifted[None])[0]) == 0.0


def test_reblur_psnr_floor_delta_and_metric():
    g = _generator(5)
    clean = torch.rand(2, 3, 20, 20, generator=g)
    lr = (clean + 0.05 * torch.randn(2, 3, 20, 20, generator=g)).clamp(0, 1)
    floor = analysis.reblur_psnr(clean, lr, None)
    delta = pad_kernel(torch.ones(1, 1), 5).expand(2, 5, 5)
    torch.testing.assert_close(analysis.reblur_psnr(clean, lr, delta), floor)
    assert math.isclose(float(floor[1]), psnr_y(clean[1], lr[1], shave=4))
    # Eq. 2 holds exactly when y is x blurred in LR space: the true kernel beats no blur.
    kernel = gaussian_kernel(5, 1.0, 1.0, 0.0)
    from asbsr.degradation import blur
    blurred = blur(clean, kernel)
    assert bool((analysis.reblur_psnr(clean, blurred, kernel.expand(2, 5, 5))
                 > analysis.reblur_psnr(clean, blurred, None) + 10).all())


def test_mean_l1_per_kernel():
    a, b = torch.zeros(2, 3, 3), torch.zeros(2, 3, 3)
    b[1, 1, 1] = 0.9
    torch.testing.assert_close(analysis.mean_l1(a, b), torch.tensor([0.0, 0.1], dtype=torch.float64))


def test_closed_loop_is_eq6_on_the_scale_one_queries(trained):
    from asbsr.inference import upscale
    from asbsr.losses import cycle_loss

    _, _, stage2 = trained
    model = stage2.model.eval()
    y, x_down = torch.rand(2, 3, 24, 22), torch.rand(2, 3, 24, 22)
    loop = analysis.closed_loop(model, y, x_down)
    assert loop["x_hat"].shape == y.shape and loop["k_hat"].shape[0] == 2
    # the scale-1 queries are the whole-image SR at scale 1 (which clamps)
    torch.testing.assert_close(loop["x_hat"].clamp(0, 1), upscale(model, y, scale=1))
    torch.testing.assert_close(loop["reblurred"], blur(loop["x_hat"], loop["k_hat"]))
    assert loop["l1"] == pytest.approx((loop["reblurred"] - y).abs().mean().item(), abs=1e-6)
    assert loop["l1"] == pytest.approx(cycle_loss(loop["x_hat"], loop["k_hat"], y).item())
    assert loop["x_error"] == pytest.approx((loop["x_hat"] - x_down).abs().mean().item())
    assert "x_error" not in analysis.closed_loop(model, y)


def test_late_mean_is_the_mean_of_the_last_quarter():
    assert analysis.late_mean([9.0, 9.0, 9.0, 1.0, 2.0, 3.0, 4.0, 5.0]) == pytest.approx(4.5)
    assert analysis.late_mean([7.0, 3.0]) == 3.0  # at least one point
    with pytest.raises(ValueError, match="empty"):
        analysis.late_mean([])
