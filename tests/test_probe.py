"""The measurements of asbsr.lab.probe against oracles, and the probe command."""

import math

import pytest
import torch

from asbsr.data import load_set
from asbsr.lab.analysis import kernel_spread
from asbsr.lab.probe import (
    analytic_lr_kernels, grouped_ridge_r2, handmade_features, lr_blur_width, probe_set, rank,
    reblur_gain, spearman, unique_photos, variance_share,
)


@pytest.fixture(scope="module")
def probe():
    """4 held-out photos, 8 patches each: small, but every number below has a wide margin."""
    return probe_set(load_set("val")[:3] + load_set("classic5")[:1], per_photo=8, seed=3)


def test_probe_set_labels_every_patch_with_its_photo(probe):
    patches = probe.patches
    assert patches.lr.shape == (32, 3, 48, 48) and patches.k_l.shape == (32, 21, 21)
    assert probe.groups.tolist() == [g for g in range(4) for _ in range(8)]
    assert patches.sources == [probe.names[g] for g in probe.groups.tolist()]
    assert all(1.5 <= d.scale <= 4 for d in patches.degradations)
    again = probe_set(load_set("val")[:3] + load_set("classic5")[:1], per_photo=8, seed=3)
    assert torch.equal(again.patches.lr, patches.lr)


def test_probe_set_refuses_small_photos_and_single_photos():
    with pytest.raises(ValueError, match="smaller than the 192-pixel"):
        probe_set([("a", torch.rand(3, 100, 300)), ("b", torch.rand(3, 300, 300))])
    with pytest.raises(ValueError, match="at least 2 photos"):
        probe_set([("a", torch.rand(3, 300, 300))])


def test_unique_photos_drops_repeats_of_name_and_pixels_only():
    a, b = torch.rand(3, 8, 8), torch.rand(3, 8, 8)
    kept = unique_photos([("a", a), ("b", b), ("a", a.clone()), ("a", b), ("c", a)])
    assert [name for name, _ in kept] == ["a", "b", "a", "c"]
    shipped = unique_photos(load_set("val") + load_set("skimage"))
    assert len(shipped) == 21  # val's copies of astronaut, chelsea, coffee, rocket count once


def test_the_analytic_lr_gaussian_scores_high_and_a_constant_kernel_exactly_zero(probe):
    patches = probe.patches
    width = lr_blur_width(patches.degradations)
    analytic = analytic_lr_kernels(patches.degradations)
    assert reblur_gain(patches.clean, patches.lr, analytic) > 5.0
    assert spearman(kernel_spread(analytic.double()), width) > 0.9
    constant = patches.k_l[:1].expand_as(patches.k_l).clone()
    assert reblur_gain(patches.clean, patches.lr, constant) == 0.0


def test_lr_blur_width_is_the_rms_radius_of_the_analytic_kernel(probe):
    # sampled on the pixel grid, a Gaussian narrower than a pixel is a delta: widths of 0.8-2.5 px
    degradations = [d for d in probe.patches.degradations
                    if 0.8 < min(d.lambda1, d.lambda2) / d.scale and max(d.lambda1, d.lambda2) / d.scale < 2.5]
    assert len(degradations) >= 3
    spread = kernel_spread(analytic_lr_kernels(degradations, 31).double())
    torch.testing.assert_close(spread, lr_blur_width(degradations), rtol=0.02, atol=0.03)


def test_spearman_against_a_brute_force_definition():
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(30, generator=generator), torch.randn(30, generator=generator)
    ra, rb = rank(a), rank(b)
    n = len(a)
    brute = 1 - 6 * float(((ra - rb) ** 2).sum()) / (n * (n * n - 1))  # no ties
    assert spearman(a, b) == pytest.approx(brute, abs=1e-12)
    assert spearman(a, a.exp()) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert rank(torch.tensor([3.0, 1.0, 3.0])).tolist() == [1.5, 0.0, 1.5]
    assert spearman(a, torch.ones(30)) == 0.0


def test_grouped_ridge_reads_a_linear_signal_and_not_group_identity():
    generator = torch.Generator().manual_seed(1)
    groups = torch.arange(10).repeat_interleave(12)
    signal = torch.randn(120, generator=generator, dtype=torch.float64)
    noise = torch.randn(120, 6, generator=generator, dtype=torch.float64)
    features = torch.cat([signal[:, None] * 2 + 0.05 * noise[:, :1], noise[:, 1:]], dim=1)
    assert grouped_ridge_r2(features, signal, groups) > 0.95
    # a feature that names the group, and a target that is a property of the group: random
    # groups in held-out folds cannot be predicted from which group they are
    one_hot = torch.nn.functional.one_hot(groups).double()
    group_target = torch.randn(10, generator=generator, dtype=torch.float64)[groups]
    assert grouped_ridge_r2(one_hot, group_target, groups) < 0.1
    with pytest.raises(ValueError, match="at least 2 groups"):
        grouped_ridge_r2(features, signal, torch.zeros(120, dtype=torch.long))


def test_variance_share_of_a_group_effect():
    groups = torch.arange(4).repeat_interleave(5)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    features = centres[groups] + 0.01 * torch.randn(20, 2, generator=torch.Generator().manual_seed(0))
    assert variance_share(features, groups) > 0.99
    assert variance_share(features, torch.arange(20) % 5) < 0.1
    assert variance_share(features, torch.arange(20)) == pytest.approx(1.0)


def test_handmade_features_fall_with_blur(probe):
    """Blurring a patch more lowers its Haar energies: the reference features see the blur."""
    lr = probe.patches.lr[:8]
    blurred = torch.nn.functional.avg_pool2d(lr, 3, stride=1, padding=1, count_include_pad=False)
    sharp, soft = handmade_features(lr), handmade_features(blurred)
    assert sharp.shape == (8, 8) and torch.isfinite(sharp).all()
    assert (soft[:, :3] < sharp[:, :3]).all()
    assert math.isfinite(float(soft.sum()))


def test_probe_command_prints_the_table_and_refuses_unknown_models(capsys):
    from asbsr.lab.cli import main

    assert main(["probe", "ours-cpu-s0", "--photos", "val", "classic5", "--per-photo", "4"]) == 0
    out = capsys.readouterr().out
    assert "25 photos (val, classic5), 4 patches each of 48 LR pixels" in out
    row = next(line for line in out.splitlines() if line.startswith("| ours-cpu-s0 |"))
    assert row.count("|") == 8 and " dB |" in row
    assert "| analytic LR Gaussian (oracle) |" in out
    assert main(["probe", "no-such-model"]) == 2
    assert "error: no model 'no-such-model' in the zoo" in capsys.readouterr().err
    assert main(["probe", "--per-photo", "2"]) == 2
