"""Table 1 baselines: LIIF, MetaSR, SRNO heads and the DCLS-style Wiener deconvolution."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from asbsr.config import make_config
from asbsr.models.baselines.dcls import wiener_deconvolve
from asbsr.models.baselines.liif import LIIF
from asbsr.models.baselines.metasr import MetaSR, meta_position, pos2weight_input
from asbsr.models.baselines.srno import SRNO, GalerkinBlock

HEADS = {"liif": LIIF, "metasr": MetaSR, "srno": SRNO}
REP_DIM = 8


def tiny_cfg(head: str, **changes):
    sizes = dict(head=head, n_resblocks=2, n_feats=16, width=32, mlp=(32, 32))
    return dataclasses.replace(make_config("smoke").model, **{**sizes, **changes})


def build(head: str, seed: int = 0, **changes):
    torch.manual_seed(seed)
    return HEADS[head](tiny_cfg(head, **changes), rep_dim=REP_DIM)


def random_inputs(batch=2, h=6, w=7, queries=40, scale=2.5, seed=1):
    gen = torch.Generator().manual_seed(seed)
    lr = torch.rand(batch, 3, h, w, generator=gen)
    coord = torch.rand(batch, queries, 2, generator=gen) * 2 - 1
    cell = torch.tensor([2 / (h * scale), 2 / (w * scale)]).expand(batch, queries, 2).clone()
    rep = torch.randn(batch, REP_DIM, generator=gen)
    return lr, coord, cell, rep


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / F.mse_loss(a, b)))


# ---------------------------------------------------------------- every head

@pytest.mark.parametrize("head", sorted(HEADS))
@pytest.mark.parametrize("ensemble", [False, True])
def test_shapes_and_encode_maps(head, ensemble):
    model = build(head, local_ensemble=ensemble)
    lr, coord, cell, rep = random_inputs()
    features = model.encode(lr, rep)
    torch.testing.assert_close(features["inp"], (lr - 0.5) / 0.5)
    for value in features.values():  # every map lives on the LR grid
        assert value.shape[0] == 2 and value.shape[-2:] == (6, 7)
    out = model.query(features, coord, cell)
    assert out.shape == (2, 40, 3) and torch.isfinite(out).all()
    torch.testing.assert_close(model(lr, coord, cell, rep), out)
    assert model.modulated is True


@pytest.mark.parametrize("head", sorted(HEADS))
def test_gradients_reach_edsr(head):
    model = build(head, local_ensemble=True)
    lr, coord, cell, rep = random_inputs()
    model(lr, coord, cell, rep).square().sum().backward()
    for name, param in model.encoder.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


@pytest.mark.parametrize("head", sorted(HEADS))
@pytest.mark.parametrize("ensemble", [False, True])
def test_query_does_not_depend_on_chunking(head, ensemble):
    model = build(head, local_ensemble=ensemble)
    lr, coord, cell, rep = random_inputs(queries=50)
    with torch.no_grad():
        features = model.encode(lr, rep)
        whole = model.query(features, coord, cell)
        halves = torch.cat([model.query(features, coord[:, :23], cell[:, :23]),
                            model.query(features, coord[:, 23:], cell[:, 23:])], dim=1)
        alone = model.query(features, coord[:, 7:8], cell[:, 7:8])
    torch.testing.assert_close(halves, whole, atol=1e-6, rtol=0)
    torch.testing.assert_close(alone, whole[:, 7:8], atol=1e-6, rtol=0)


@pytest.mark.parametrize("head", sorted(HEADS))
def test_modulation_uses_rep_only_when_modulated(head):
    lr, coord, cell, rep = random_inputs()
    other = rep.flip(0) + 1.0
    with torch.no_grad():
        modulated = build(head, modulation=True)
        first, second = modulated(lr, coord, cell, rep), modulated(lr, coord, cell, other)
        assert not torch.allclose(first, second)
        plain = build(head, modulation=False)
        assert plain.modulated is False
        torch.testing.assert_close(plain(lr, coord, cell, rep), plain(lr, coord, cell, other))
        torch.testing.assert_close(plain(lr, coord, cell, rep), plain(lr, coord, cell, None))


@pytest.mark.parametrize("head", ["liif", "metasr"])
def test_tiled_encoding_with_the_receptive_radius_is_exact(head):
    from asbsr.inference import encode_tiled

    model = build(head)
    lr, _, _, rep = random_inputs(h=13, w=11)
    with torch.no_grad():
        whole = model.encode(lr, rep)
        tiled = encode_tiled(model, lr, rep, tile=4)
        short = encode_tiled(model, lr, rep, tile=4, halo=model.receptive_radius - 1)
    for key in whole:
        torch.testing.assert_close(tiled[key], whole[key], atol=1e-5, rtol=1e-5)
    # One pixel less of halo is not enough: the 3x3 unfold reaches one pixel beyond EDSR's radius.
    assert not torch.allclose(short["feat"], whole["feat"], atol=1e-5)


def test_srno_declares_that_it_cannot_be_tiled():
    assert build("srno").receptive_radius is None


# ---------------------------------------------------------------- LIIF

def test_liif_matches_a_slow_reference_without_ensemble():
    model = build("liif", local_ensemble=False, modulation=False)
    lr, coord, cell, _ = random_inputs(batch=2, h=5, w=4, queries=12)
    # Put some queries exactly on the border of the grid and near cell edges.
    coord[0, 0] = torch.tensor([-1.0, 1.0])
    coord[1, 1] = torch.tensor([-1 + 2 / 5 + 1e-4, -1 + 2 / 4 - 1e-4])
    with torch.no_grad():
        feat = model.encoder((lr - 0.5) / 0.5)  # (B, C, h, w)
        out = model(lr, coord, cell)
        padded = F.pad(feat, (1, 1, 1, 1))
        h, w = feat.shape[-2:]
        for b in range(2):
            for q in range(coord.shape[1]):
                y, x = coord[b, q].tolist()
                row = min(max(int(math.floor((y + 1) / 2 * h)), 0), h - 1)
                col = min(max(int(math.floor((x + 1) / 2 * w)), 0), w - 1)
                patch = padded[b, :, row:row + 3, col:col + 3].reshape(-1)  # (C*9), c-major
                centre_y, centre_x = -1 + (2 * row + 1) / h, -1 + (2 * col + 1) / w
                rel = torch.tensor([(y - centre_y) * h, (x - centre_x) * w])
                rel_cell = torch.tensor([cell[b, q, 0] * h, cell[b, q, 1] * w])
                expected = model.decoder(torch.cat([patch, rel, rel_cell])) * 0.5 + 0.5
                torch.testing.assert_close(out[b, q], expected, atol=1e-5, rtol=1e-5)


def test_liif_ensemble_is_continuous_across_feature_cells():
    # The area-weighted ensemble makes the decoded image continuous; the nearest rule does not.
    lr, _, _, _ = random_inputs(batch=1, h=5, w=5)
    border = -1 + 2 * 2 / 5  # between LR pixels 1 and 2
    coord = torch.tensor([[[border - 1e-4, 0.1], [border + 1e-4, 0.1]]])
    cell = torch.full((1, 2, 2), 2 / 15)
    with torch.no_grad():
        smooth = build("liif", local_ensemble=True, modulation=False)(lr, coord, cell)
        jumpy = build("liif", local_ensemble=False, modulation=False)(lr, coord, cell)
    assert (smooth[0, 0] - smooth[0, 1]).abs().max() < 1e-2
    assert (jumpy[0, 0] - jumpy[0, 1]).abs().max() > (smooth[0, 0] - smooth[0, 1]).abs().max()


# ---------------------------------------------------------------- MetaSR

def test_metasr_pos2weight_input_hand_computed():
    # A x3 output of a 4 x 8 LR image is 12 x 24 pixels: cell (2/12, 2/24), 1/s = 1/3.
    # Output pixel (4, 14): its top-left corner is at HR (4, 14) = LR (4/3, 14/3), inside LR pixel
    # (1, 4) at offset (1/3, 2/3). Output pixel (3, 0): corner at LR (1, 0) exactly, on a border:
    # LR pixel (1, 0), offset (0, 0), not (0, 1) in the pixel before.
    h, w, scale = 4, 8, 3
    pixels = torch.tensor([[4.0, 14.0], [3.0, 0.0]])
    coord = (-1 + (2 * pixels + 1) / torch.tensor([h * scale, w * scale])).unsqueeze(0)
    cell = torch.tensor([2 / (h * scale), 2 / (w * scale)]).expand(1, 2, 2)
    row, col, position = meta_position(coord, cell, h, w)
    assert row.tolist() == [[1, 1]] and col.tolist() == [[4, 0]]
    expected = torch.tensor([[[1 / 3, 2 / 3, 1 / 3], [0.0, 0.0, 1 / 3]]])
    torch.testing.assert_close(position, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(pos2weight_input(coord, cell, h, w), position)


def test_metasr_matches_a_slow_reference():
    model = build("metasr", modulation=False)
    lr, coord, cell, _ = random_inputs(batch=2, h=5, w=6, queries=10, scale=3.2)
    with torch.no_grad():
        feat = model.encoder((lr - 0.5) / 0.5)
        out = model(lr, coord, cell)
        padded = F.pad(feat, (1, 1, 1, 1))
        h, w = feat.shape[-2:]
        for b in range(2):
            for q in range(coord.shape[1]):
                # Meta-SR's i/s for the output pixel's top-left corner, in LR pixels.
                u = (coord[b, q, 0].item() - cell[b, q, 0].item() / 2 + 1) / 2 * h
                v = (coord[b, q, 1].item() - cell[b, q, 1].item() / 2 + 1) / 2 * w
                row = min(max(math.floor(u + 1e-5), 0), h - 1)
                col = min(max(math.floor(v + 1e-5), 0), w - 1)
                position = torch.tensor([u - row, v - col, 1 / 3.2])
                weight = model.pos2weight(position).view(-1, 3)  # (9C, 3)
                patch = padded[b, :, row:row + 3, col:col + 3].reshape(-1)
                torch.testing.assert_close(out[b, q], patch @ weight * 0.5 + 0.5,
                                           atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- SRNO

def test_galerkin_block_equals_the_explicit_attention_matrix():
    torch.manual_seed(0)
    block = GalerkinBlock(32, heads=4)
    x, context = torch.randn(2, 9, 32), torch.randn(2, 13, 32)
    with torch.no_grad():
        got = block(x, context)
        q, k, v = block.to_q(x), block.to_k(context), block.to_v(context)
        heads = []
        for head in range(4):
            part = slice(8 * head, 8 * head + 8)
            kh, vh = block.norm_k(k[..., part]), block.norm_v(v[..., part])
            scores = q[..., part] @ kh.transpose(1, 2) / context.shape[1]  # (B, N, M), no softmax
            heads.append(scores @ vh)
        y = x + block.to_out(torch.cat(heads, dim=-1))
        expected = y + block.ffn(y)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_srno_always_uses_the_four_neighbour_ensemble():
    lr, coord, cell, rep = random_inputs()
    on, off = build("srno", local_ensemble=True), build("srno", local_ensemble=False)
    off.load_state_dict(on.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(on(lr, coord, cell, rep), off(lr, coord, cell, rep))


def test_srno_width_must_split_into_heads():
    with pytest.raises(ValueError, match="heads"):
        SRNO(tiny_cfg("srno", width=40), rep_dim=REP_DIM)


# ---------------------------------------------------------------- DCLS-style deconvolution

def smooth_images(batch=2, size=40, seed=3):
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 3, size // 4, size // 4, generator=gen)
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)


def test_wiener_undoes_a_shift_kernel_in_blur_convention():
    # An asymmetric kernel pins the convention down: a single tap at (c + 1, c - 2) makes
    # degradation.blur move the image; deconvolving must move it back, not twice as far.
    from asbsr.degradation import blur

    x = smooth_images()
    kernel = torch.zeros(2, 7, 7)
    kernel[:, 4, 1] = 1.0
    y = blur(x, kernel)
    restored = wiener_deconvolve(y, kernel, noise_to_signal=1e-6)
    inner = (..., slice(6, -6), slice(6, -6))  # away from the reflect-padded border
    assert (restored - x)[inner].abs().max() < 1e-4
    assert (y - x)[inner].abs().max() > 1e-2


def test_wiener_round_trip_improves_psnr():
    from asbsr.degradation import blur, gaussian_kernel

    x = smooth_images(size=48)
    kernel = torch.stack([gaussian_kernel(13, 1.6, 0.8, 0.6), gaussian_kernel(13, 1.2, 1.2, 0.0)])
    y = blur(x, kernel)
    restored = wiener_deconvolve(y, kernel)
    for b in range(2):
        assert psnr(restored[b], x[b]) > psnr(y[b], x[b]) + 1.0
    assert restored.shape == x.shape and restored.min() >= 0 and restored.max() <= 1
    # A shared (k, k) kernel is broadcast over the batch.
    torch.testing.assert_close(wiener_deconvolve(y[:1], kernel[0]), restored[:1])


def test_wiener_identity_kernel_and_bad_input():
    x = smooth_images(size=8)  # smaller than the padding: falls back to edge replication
    delta = torch.zeros(21, 21)
    delta[10, 10] = 1.0
    torch.testing.assert_close(wiener_deconvolve(x, delta, noise_to_signal=1e-6), x,
                               atol=1e-5, rtol=0)
    with pytest.raises(ValueError):
        wiener_deconvolve(x, torch.ones(2, 4, 4) / 16)
    with pytest.raises(ValueError):
        wiener_deconvolve(x, delta, noise_to_signal=0.0)
