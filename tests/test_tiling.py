"""Output-tiled inference equals the whole-image pass, with memory bounded by the tile."""

from __future__ import annotations

import pytest
import torch

from asbsr.config import make_config, method_config
from asbsr.inference import required_halo, upscale
from asbsr.models.coords import make_coord, nearest_index
from asbsr.tiling import crop_coordinates, first_output_index, upscale_tiled
from asbsr.train import build_blind_sr, build_stage1

TINY = {"encoder.dim": 16, "model.n_resblocks": 1, "model.n_feats": 8, "model.width": 16,
        "model.mlp": (16,)}




def blind_model(method: str, local_ensemble: bool):
    """An untrained BlindSR of ``method`` (random weights serve: equality is the point)."""
    config = method_config(make_config("smoke", {**TINY, "model.local_ensemble": local_ensemble}),
                           method)
    torch.manual_seed(0)
    encoder, _, estimator = build_stage1(config)
    return build_blind_sr(config, encoder, estimator).eval()


# Scales with an even denominator (2.5, 1.5) put output centres exactly on LR pixel borders;
# 6.3 is above the training range (clipped cells); 0.6 downscales (cells wider than a pixel).
CASES = [dict(scale=2.5), dict(scale=1.5), dict(scale=1.7), dict(scale=3.0), dict(scale=6.3),
         dict(scale=0.6), dict(size=(47, 30))]


@pytest.mark.parametrize("local_ensemble", [False, True], ids=["nearest", "ensemble"])
@pytest.mark.parametrize("method", ["ours", "liif", "metasr", "dcls_lte"])
def test_tiled_equals_whole_image(method, local_ensemble):
    model = blind_model(method, local_ensemble)
    lr = torch.rand(2, 3, 22, 19, generator=torch.Generator().manual_seed(1))
    for case in CASES:
        whole = upscale(model, lr, **case)
        for tile in (5, 8, 64):  # tiles that do not divide 22 x 19, and one larger than it
            tiled = upscale_tiled(model, lr, tile=tile, chunk=97, **case)
            assert tiled.shape == whole.shape
            torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=0, msg=f"{case} tile {tile}")


@pytest.mark.parametrize("method", ["ours", "metasr"])
def test_float64_tiling_is_exact_to_rounding(method):
    # In float64 the only differences left are rounding: the 1e-5 above is float32 noise.
    model = blind_model(method, True).double()
    lr = torch.rand(1, 3, 21, 18, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    for case in (dict(scale=2.5), dict(scale=1.5), dict(size=(47, 30))):
        tiled = upscale_tiled(model, lr, tile=6, **case)
        assert tiled.dtype == torch.float64
        torch.testing.assert_close(tiled, upscale(model, lr, **case), atol=1e-12, rtol=0)


def test_halo_too_small_shows_seams():
    # Without the receptive field's worth of context the crops' zero padding leaks in.
    model = blind_model("ours", False)
    lr = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(2))
    whole = upscale(model, lr, scale=2.0)
    short = upscale_tiled(model, lr, scale=2.0, tile=8, halo=required_halo(model.sr) - 1)
    assert (short - whole).abs().max() > 1e-4


def test_encode_sees_only_tile_sized_crops(monkeypatch):
    model = blind_model("ours", True)
    shapes = []
    encode = model.sr.encode

    def recording(crop, rep=None):
        shapes.append(tuple(crop.shape[-2:]))
        return encode(crop, rep)

    monkeypatch.setattr(model.sr, "encode", recording)
    lr = torch.rand(1, 3, 40, 33)
    upscale_tiled(model, lr, scale=2.2, tile=10)
    context = required_halo(model.sr) + 2
    assert len(shapes) == 4 * 4
    assert max(max(s) for s in shapes) <= 10 + 2 * context < 33


def test_srno_is_refused():
    model = blind_model("srno", True)
    with pytest.raises(ValueError, match="not exact for SRNO"):
        upscale_tiled(model, torch.rand(1, 3, 16, 16), scale=2)


def test_bad_arguments():
    model = blind_model("ours", False)
    lr = torch.rand(1, 3, 16, 16)
    for bad in (dict(tile=0), dict(tile=2.5), dict(chunk=0), dict(halo=-1)):
        with pytest.raises(ValueError):
            upscale_tiled(model, lr, scale=2, **bad)
    with pytest.raises(ValueError, match="exactly one"):
        upscale_tiled(model, lr, scale=2, size=(32, 32))
    with pytest.raises(TypeError, match="BlindSR"):
        upscale_tiled(model.sr, lr, scale=2)


def test_blocks_partition_the_output_rows():
    # Brute force: each output row belongs to the block containing its centre, exactly once.
    for h, H, tile in [(22, 55, 5), (7, 3, 2), (19, 19, 4), (10, 25, 3), (9, 61, 4)]:
        owners = []
        for top in range(0, h, tile):
            bottom = min(top + tile, h)
            owners += list(range(first_output_index(top, H, h), first_output_index(bottom, H, h)))
        assert owners == list(range(H))
        for i in range(H):
            centre = (i + 0.5) * h / H
            top = int(centre // tile) * tile
            assert first_output_index(top, H, h) <= i < first_output_index(min(top + tile, h), H, h)


def test_crop_coordinates_read_the_same_feature_pixel():
    # x2.5 with even h: a fifth of the centres lie exactly on LR pixel borders.
    h, H, start, stop = 10, 25, 3, 10
    global_rows = make_coord(H, 1)[:, 0]
    local = crop_coordinates(global_rows, h, start, stop)
    zeros = torch.zeros_like(local)
    want = nearest_index(torch.stack([global_rows, zeros], -1), h, 1)[0] - start
    got = nearest_index(torch.stack([local, zeros], -1), stop - start, 1)[0]
    inside = (want >= 0) & (want < stop - start)
    assert torch.equal(got[inside], want[inside])
    # and the mapping is the affine one, to float rounding
    u = (global_rows.double() + 1) / 2 * h
    torch.testing.assert_close(local.double(), (u - start) / (stop - start) * 2 - 1,
                               atol=1e-6, rtol=0)
