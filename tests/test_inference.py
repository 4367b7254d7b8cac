"""Tests of whole-image inference: output grids, cell clipping, chunking and tiled encoding."""

from __future__ import annotations

import pytest
import torch

from asbsr.config import ModelConfig
from asbsr.inference import encode_tiled, grid_queries, output_size, required_halo, upscale
from asbsr.models.coords import make_cell, make_coord
from asbsr.models.lte import LTE

REP = 8




def small_model(**kw) -> LTE:
    torch.manual_seed(0)
    base = dict(n_resblocks=2, n_feats=16, width=32, mlp=(32, 32), local_ensemble=True,
                modulation=True)
    base.update(kw)
    return LTE(ModelConfig(**base), rep_dim=REP).eval()


def test_grid_queries_hand_computed():
    # A 3x3 LR grid at x2.5 -> 8x8 output: centres -1 + (2i + 1) / 8, cell 2 / 8.
    assert output_size((3, 3), scale=2.5) == (8, 8)
    coord, cell = grid_queries((8, 8), (3, 3), training_max_scale=4.0)
    assert coord.shape == (64, 2) and cell.shape == (64, 2)
    torch.testing.assert_close(coord[0], torch.tensor([-0.875, -0.875]))
    torch.testing.assert_close(coord[1], torch.tensor([-0.875, -0.625]))  # row-major: x moves
    torch.testing.assert_close(coord[8], torch.tensor([-0.625, -0.875]))
    torch.testing.assert_close(coord[-1], torch.tensor([0.875, 0.875]))
    torch.testing.assert_close(cell, torch.full((64, 2), 0.25))


def test_cell_clipping_above_the_training_scale():
    # Effective scale 8/3 > 2: the cell is that of a x2 output, 2 / (3 * 2).
    _, cell = grid_queries((8, 8), (3, 3), training_max_scale=2.0)
    torch.testing.assert_close(cell, torch.full((64, 2), 1 / 3))
    # Per axis: 10x4 from 2x2 is x5 vertically (clipped to x4) and x2 horizontally (not clipped).
    _, cell = grid_queries((10, 4), (2, 2), training_max_scale=4.0)
    torch.testing.assert_close(cell[0], torch.tensor([2 / 8, 2 / 4]))
    _, cell = grid_queries((8, 8), (3, 3), training_max_scale=None)
    torch.testing.assert_close(cell, torch.full((64, 2), 0.25))


def test_output_sizes():
    assert output_size((5, 7), scale=2.2) == (11, 15)  # 11.0, 15.4
    assert output_size((5, 7), scale=1.7) == (round(8.5), 12)
    assert output_size((5, 7), size=(9, 4)) == (9, 4)
    model = small_model(local_ensemble=False)
    lr, rep = torch.rand(2, 3, 5, 7), torch.randn(2, REP)
    assert upscale(model, lr, scale=2.2, rep=rep).shape == (2, 3, 11, 15)
    assert upscale(model, lr, scale=0.5, rep=rep).shape == (2, 3, 2, 4)  # round(2.5) = 2
    assert upscale(model, lr, size=(9, 4), rep=rep).shape == (2, 3, 9, 4)


def test_scale_one_queries_the_lr_grid():
    model = small_model()
    lr, rep = torch.rand(1, 3, 6, 5), torch.randn(1, REP)
    out = upscale(model, lr, scale=1, rep=rep)
    assert out.shape == lr.shape
    with torch.no_grad():
        direct = model(lr, make_coord(6, 5)[None], make_cell(6, 5, 30)[None], rep)
    torch.testing.assert_close(out, direct.clamp(0, 1).view(1, 6, 5, 3).permute(0, 3, 1, 2))
    assert out.min() >= 0 and out.max() <= 1


def test_chunked_equals_unchunked():
    model = small_model()
    lr, rep = torch.rand(2, 3, 7, 6), torch.randn(2, REP)
    whole = upscale(model, lr, scale=2.7, rep=rep, chunk=10**6)
    chunked = upscale(model, lr, scale=2.7, rep=rep, chunk=37, progress=True)
    torch.testing.assert_close(chunked, whole, atol=1e-6, rtol=0)


def test_required_halo_is_the_receptive_radius():
    # Perturb one LR pixel; the encoded maps change exactly within receptive_radius of it.
    model = small_model()
    assert required_halo(model) == 2 * 2 + 3
    lr, rep = torch.rand(1, 3, 31, 31), torch.randn(1, REP)
    bumped = lr.clone()
    bumped[..., 15, 15] += 0.5
    with torch.no_grad():
        a, b = model.encode(lr, rep), model.encode(bumped, rep)
    for key in ("coef", "freq"):
        changed = ((a[key] - b[key]).abs().amax(dim=(0, 1)) > 0).nonzero()
        assert (changed - 15).abs().max() == model.receptive_radius, key


@pytest.mark.parametrize("local_ensemble", [False, True])
def test_tiled_encoding_equals_untiled(local_ensemble):
    model = small_model(local_ensemble=local_ensemble)
    lr, rep = torch.rand(2, 3, 37, 29), torch.randn(2, REP)
    with torch.no_grad():
        whole = model.encode(lr, rep)
        tiled = encode_tiled(model, lr, rep, tile=16)
        short = encode_tiled(model, lr, rep, tile=16, halo=required_halo(model) - 1)
    assert whole.keys() == tiled.keys()
    for key in whole:
        torch.testing.assert_close(tiled[key], whole[key], atol=1e-5, rtol=0)
    # the gathered maps are channels-last (one contiguous row per query), tiled or not
    for maps in (whole, tiled):
        assert all(maps[k].is_contiguous(memory_format=torch.channels_last) for k in ("coef", "freq"))
    # One pixel of halo too few must show at the seams: the test can fail.
    assert (short["coef"] - whole["coef"]).abs().max() > 1e-4
    out = upscale(model, lr, scale=1.6, rep=rep, tile=16)
    torch.testing.assert_close(out, upscale(model, lr, scale=1.6, rep=rep), atol=1e-5, rtol=0)


def test_tiled_plain_model_and_tile_larger_than_image():
    model = small_model(modulation=False)
    lr = torch.rand(1, 3, 10, 9)
    with torch.no_grad():
        whole = model.encode(lr, None)
        for tile in (4, 64):
            tiled = encode_tiled(model, lr, None, tile=tile)
            torch.testing.assert_close(tiled["freq"], whole["freq"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("kwargs", [
    dict(scale=0), dict(scale=-2.0), dict(scale=float("nan")), dict(scale=float("inf")),
    dict(scale="2"), dict(scale=True), dict(), dict(scale=2, size=(4, 4)), dict(size=(0, 4)),
    dict(size=(2.5, 4)), dict(size=8), dict(scale=0.01), dict(scale=2, chunk=0),
    dict(scale=2, tile=-1)])
def test_bad_arguments_raise_value_error(kwargs):
    model = small_model()
    with pytest.raises(ValueError):
        upscale(model, torch.rand(1, 3, 4, 4), rep=torch.randn(1, REP), **kwargs)


def test_modulated_model_needs_rep_and_lr_must_be_rgb_batch():
    model = small_model()
    with pytest.raises(ValueError):
        upscale(model, torch.rand(1, 3, 4, 4), scale=2)
    with pytest.raises(ValueError):
        upscale(model, torch.rand(3, 4, 4), scale=2, rep=torch.randn(1, REP))
    with pytest.raises(ValueError):
        encode_tiled(model, torch.rand(1, 3, 4, 4), torch.randn(1, REP), tile=0)


def test_whole_image_encoders_refuse_tiling():
    # A head that declares receptive_radius = None (SRNO's attention) cannot be tiled exactly.
    class WholeImage(LTE):
        receptive_radius = None

    torch.manual_seed(0)
    model = WholeImage(ModelConfig(n_resblocks=1, n_feats=8, width=8, mlp=(8,), modulation=False))
    lr = torch.rand(1, 3, 8, 8)
    for halo in (None, 3):
        with pytest.raises(ValueError):
            encode_tiled(model, lr, None, tile=4, halo=halo)
    with pytest.raises(ValueError):
        upscale(model, lr, scale=2, tile=4)
    assert upscale(model, lr, scale=2).shape == (1, 3, 16, 16)


def test_a_blind_model_clips_the_cell_at_its_own_training_scale():
    from asbsr.config import make_config, method_config
    from asbsr.tiling import upscale_tiled
    from asbsr.train import build_blind_sr, build_stage1

    config = method_config(make_config("smoke", {"degradation.scale_range": (1.0, 2.0)}), "ours")
    torch.manual_seed(0)
    encoder, _, estimator = build_stage1(config)
    model = build_blind_sr(config, encoder, estimator).eval()
    assert model.max_scale == 2.0  # from the config, not a default of the inference code
    lr = torch.rand(1, 3, 10, 10)
    own = upscale(model, lr, scale=3.5)
    torch.testing.assert_close(own, upscale(model, lr, scale=3.5, training_max_scale=2.0))
    assert not torch.allclose(own, upscale(model, lr, scale=3.5, training_max_scale=4.0))
    torch.testing.assert_close(upscale_tiled(model, lr, scale=3.5, tile=6), own, atol=1e-5, rtol=0)
    # E runs inside upscale for a BlindSR: the same as preparing by hand and querying the head
    prepared, rep = model.prepare(lr)
    torch.testing.assert_close(own, upscale(model.sr, prepared, scale=3.5, rep=rep, training_max_scale=2.0))
