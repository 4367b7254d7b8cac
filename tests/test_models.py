"""Tests of E / SimSiam, M, EDSR and the LTE head (small sizes: 2 blocks x 16 channels)."""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.signal import convolve2d

from asbsr.config import ModelConfig
from asbsr.models import build_sr_model
from asbsr.models.edsr import EDSR
from asbsr.models.kernel_estimator import KernelEstimator
from asbsr.models.lte import LTE
from asbsr.models.predictor import DegradationEncoder, SimSiam

REP = 8




def small_cfg(**kw) -> ModelConfig:
    base = dict(n_resblocks=2, n_feats=16, width=32, mlp=(32, 32), local_ensemble=False,
                modulation=True)
    base.update(kw)
    return ModelConfig(**base)


# ---------------------------------------------------------------- E and SimSiam (Section 3.1)

def test_encoder_layout_at_paper_size():
    enc = DegradationEncoder("haar", 256)
    convs = [m for m in enc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.stride[0]) for c in convs] == [
        (9, 64, 1), (64, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1)]
    assert DegradationEncoder("rgb", 256).body[0][0].in_channels == 3
    with pytest.raises(ValueError):
        DegradationEncoder("fft")


@pytest.mark.parametrize("kind", ["haar", "rgb"])
@pytest.mark.parametrize("side", [32, 33])
def test_encoder_shape(kind, side):
    torch.manual_seed(0)
    enc = DegradationEncoder(kind, dim=32)
    assert enc(torch.rand(3, 3, side, side)).shape == (3, 32)


@pytest.mark.parametrize("kind", ["haar", "rgb"])
def test_encoder_block_by_block_equals_the_whole_image(kind):
    torch.manual_seed(0)
    encoder = DegradationEncoder(kind, dim=16).double().eval()
    for module in encoder.modules():  # running statistics that are not the identity
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(), module.running_var.uniform_(0.5, 2.0)
    assert encoder.reach() == (11, 4)
    for shape in [(2, 3, 67, 45), (1, 3, 130, 97), (1, 3, 9, 8)]:
        lr = torch.rand(*shape, dtype=torch.float64)
        with torch.no_grad():
            whole = encoder(lr)
            for tile in (4, 12, 33, 500):  # tiles smaller than, not dividing, larger than the input
                torch.testing.assert_close(encoder.forward_tiled(lr, tile), whole, atol=1e-12, rtol=0)
    with pytest.raises(RuntimeError, match="eval mode"):
        encoder.train().forward_tiled(lr)


def test_haar_encoder_sees_only_high_frequencies():
    # Adding a constant moves only the low band, so E_haar cannot see it; E_rgb can.
    torch.manual_seed(0)
    x = torch.rand(2, 3, 24, 24) * 0.8
    for kind, same in (("haar", True), ("rgb", False)):
        enc = DegradationEncoder(kind, dim=32).eval()
        with torch.no_grad():
            close = torch.allclose(enc(x), enc(x + 0.1), atol=1e-5)
        assert close == same, kind


def test_simsiam_stop_gradient_and_projector_trained():
    torch.manual_seed(0)
    model = SimSiam(DegradationEncoder("haar", dim=32), dim=32, pred_hidden=64)
    x1 = torch.rand(4, 3, 16, 16, requires_grad=True)
    x2 = torch.rand(4, 3, 16, 16, requires_grad=True)
    p1, p2, z1, z2, r1, r2 = model(x1, x2)
    for t in (p1, p2, z1, z2, r1, r2):
        assert t.shape == (4, 32)
    assert z1.grad_fn is None and not z1.requires_grad and not z2.requires_grad
    assert r1.requires_grad and r2.requires_grad  # M's loss must reach E
    # D(p1, sg(z2)): no gradient may reach the second view through z2.
    loss = -F.cosine_similarity(p1, z2, dim=-1).mean()
    loss.backward()
    assert x2.grad is None
    assert x1.grad is not None and x1.grad.abs().sum() > 0
    assert model.projector[0].weight.grad is not None  # the projector trains (authors' defect)
    assert any(p is model.projector[0].weight for p in model.parameters())


# ---------------------------------------------------------------- M (Section 3.2)

def test_kernel_estimator_shape_sum_and_gradient():
    torch.manual_seed(0)
    est = KernelEstimator(dim=REP)
    rep = torch.randn(5, REP, requires_grad=True)
    k = est(rep)
    assert k.shape == (5, 21, 21)
    torch.testing.assert_close(k.sum(dim=(1, 2)), torch.ones(5), atol=1e-5, rtol=0)
    # Deep linear: no sign constraint; the sum is 1 but entries may be negative.
    (k * torch.randn_like(k)).sum().backward()
    assert rep.grad is not None and rep.grad.abs().sum() > 0


def test_kernel_estimator_is_the_true_convolution_of_its_filters():
    # Fix the four filters through the heads' biases, then compare with scipy's full convolution.
    torch.manual_seed(0)
    est = KernelEstimator(dim=REP).double()
    filters = [torch.rand(f, f, dtype=torch.float64) + 0.1 for f in (11, 7, 5, 1)]
    with torch.no_grad():
        for head, filt in zip(est.heads, filters):
            head.weight.zero_()
            head.bias.copy_(filt.flatten())
    k = est(torch.randn(2, REP, dtype=torch.float64)).detach()
    expected = filters[0].numpy()
    for filt in filters[1:]:
        expected = convolve2d(expected, filt.numpy(), mode="full")
    expected /= expected.sum()
    assert expected.shape == (21, 21)
    np.testing.assert_allclose(k[0].numpy(), expected, atol=1e-12)
    np.testing.assert_allclose(k[1].numpy(), expected, atol=1e-12)


def test_kernel_estimate_is_a_point_spread_function_for_blur():
    # blur is a true convolution: blurring a centred delta image must reproduce k̂ unflipped.
    from asbsr import degradation
    torch.manual_seed(0)
    k = KernelEstimator(dim=REP)(torch.randn(1, REP)).detach()
    assert not torch.equal(k, k.flip(-2, -1))  # asymmetric, so orientation matters
    delta = torch.zeros(1, 3, 41, 41)
    delta[..., 20, 20] = 1.0
    blurred = degradation.blur(delta, k)
    torch.testing.assert_close(blurred[0, 0, 10:31, 10:31], k[0], atol=1e-6, rtol=0)


# ---------------------------------------------------------------- EDSR (Section 3.3)

def test_edsr_shapes_and_global_skip():
    torch.manual_seed(0)
    net = EDSR(2, 16, None)
    x = torch.randn(2, 3, 9, 7)
    assert net(x).shape == (2, 16, 9, 7)
    with torch.no_grad():
        net.tail.weight.zero_()
        net.tail.bias.zero_()
        torch.testing.assert_close(net(x), net.head(x))
    assert net.receptive_radius == 6


def test_modulation_with_unit_gates_equals_plain_edsr():
    torch.manual_seed(0)
    modulated, plain = EDSR(2, 16, rep_dim=REP), EDSR(2, 16, None)
    result = plain.load_state_dict(modulated.state_dict(), strict=False)
    assert not result.missing_keys  # every plain weight has a modulated twin
    x, rep = torch.randn(2, 3, 8, 8), torch.randn(2, REP)
    with torch.no_grad():
        assert not torch.allclose(modulated(x, rep), plain(x), atol=1e-4)
        for block in modulated.blocks:
            block.modulation[2].weight.zero_()
            block.modulation[2].bias.fill_(100.0)  # sigmoid(100) == 1 in float32
        assert torch.equal(modulated(x, rep), plain(x))


def test_modulation_depends_on_rep_and_plain_ignores_it():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8)
    modulated = EDSR(2, 16, rep_dim=REP)
    assert not torch.allclose(modulated(x, torch.randn(2, REP)), modulated(x, torch.randn(2, REP)))
    with pytest.raises(ValueError):
        modulated(x, None)
    plain = EDSR(2, 16, None)
    assert torch.equal(plain(x, torch.randn(2, REP)), plain(x))


# ---------------------------------------------------------------- LTE head

def reference_query(model: LTE, features, coord, cell):
    """A slow, loop-by-loop LTE query, written from the equations (no gather_neighbours)."""
    inp, coef, freq = features["inp"], features["coef"], features["freq"]
    batch, queries, _ = coord.shape
    h, w = coef.shape[-2:]
    offsets = [(-1, -1), (-1, 1), (1, -1), (1, 1)] if model.local_ensemble else [(0, 0)]
    out = torch.zeros(batch, queries, 3, dtype=coord.dtype)
    for b in range(batch):
        for q in range(queries):
            cy, cx = coord[b, q].tolist()
            preds, areas = [], []
            for dy, dx in offsets:
                sy = min(max(cy + dy / h + 1e-6, -1 + 1e-6), 1 - 1e-6)  # LIIF's "+ eps_shift"
                sx = min(max(cx + dx / w + 1e-6, -1 + 1e-6), 1 - 1e-6)
                row = min(max(math.floor((sy + 1) * h / 2), 0), h - 1)
                col = min(max(math.floor((sx + 1) * w / 2), 0), w - 1)
                rel = torch.tensor([(cy - (-1 + (2 * row + 1) / h)) * h,
                                    (cx - (-1 + (2 * col + 1) / w)) * w], dtype=coord.dtype)
                f = freq[b, :, row, col]
                rel_cell = cell[b, q] * torch.tensor([h, w], dtype=coord.dtype)
                angle = []
                for k in range(model.width // 2):
                    phase = (model.phase.weight[k] * rel_cell).sum()
                    angle.append(f[2 * k] * rel[0] + f[2 * k + 1] * rel[1] + phase)
                angle = math.pi * torch.stack(angle)
                basis = torch.cat([torch.cos(angle), torch.sin(angle)])
                preds.append(model.mlp(coef[b, :, row, col] * basis))
                areas.append(abs(rel[0] * rel[1]) + 1e-9)
            if model.local_ensemble:
                total = sum(areas)
                value = sum(p * areas[3 - i] / total for i, p in enumerate(preds))
            else:
                value = preds[0]
            # Bilinear sample of the LR input, border padding, align_corners=False.
            py = min(max(((cy + 1) * h - 1) / 2, 0), h - 1)
            px = min(max(((cx + 1) * w - 1) / 2, 0), w - 1)
            y0, x0 = math.floor(py), math.floor(px)
            y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
            ty, tx = py - y0, px - x0
            bil = ((1 - ty) * (1 - tx) * inp[b, :, y0, x0] + (1 - ty) * tx * inp[b, :, y0, x1]
                   + ty * (1 - tx) * inp[b, :, y1, x0] + ty * tx * inp[b, :, y1, x1])
            out[b, q] = (value + bil) * 0.5 + 0.5
    return out


def test_local_ensemble_weights_are_bilinear_interpolation_everywhere():
    """Blending the 4 neighbours' *values* with the ensemble weights is bilinear interpolation
    (border padding): at random points, at feature-pixel centres (where the centre pixel must get
    full weight) and at the centres of the last row and column (where both neighbours of an axis
    clamp to one pixel and the other axis must keep its interpolation)."""
    from asbsr.models.coords import gather_neighbours, make_coord

    h, w = 6, 5
    fmap = torch.rand(1, 1, h, w, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    grids = [make_coord(3 * h, 3 * w, dtype=torch.float64),  # x3: every third query on a centre
             make_coord(h, w, dtype=torch.float64),          # x1: all on centres
             torch.rand(200, 2, dtype=torch.float64) * 2 - 1]
    # centres of the last row / column, with the other coordinate anywhere
    edge = torch.rand(40, 2, dtype=torch.float64) * 2 - 1
    edge[:20, 0], edge[20:, 1] = 1 - 1 / h, 1 - 1 / w
    for coord in grids + [edge]:
        coord = coord.unsqueeze(0)
        (values,), _, weights = gather_neighbours([fmap], coord, local_ensemble=True)
        blended = (values[..., 0] * weights).sum(1)
        expected = F.grid_sample(fmap, coord.flip(-1).unsqueeze(1), mode="bilinear",
                                 padding_mode="border", align_corners=False)[0, 0, 0]
        torch.testing.assert_close(blended[0], expected, atol=1e-7, rtol=0)
    # the x1 grid: each query is its own pixel's centre, and that pixel gets (almost) all the weight
    (values,), _, weights = gather_neighbours([fmap], grids[1].unsqueeze(0), local_ensemble=True)
    torch.testing.assert_close((values[..., 0] * weights).sum(1)[0], fmap.flatten(), atol=1e-7, rtol=0)


@pytest.mark.parametrize("local_ensemble", [False, True])
def test_lte_query_matches_reference_loop(local_ensemble):
    torch.manual_seed(0)
    model = LTE(small_cfg(width=8, mlp=(16,), local_ensemble=local_ensemble), rep_dim=REP).double()
    lr = torch.rand(2, 3, 5, 4, dtype=torch.float64)
    coord = torch.rand(2, 7, 2, dtype=torch.float64) * 2 - 1
    cell = torch.rand(2, 7, 2, dtype=torch.float64) * 0.5
    with torch.no_grad():
        features = model.encode(lr, torch.randn(2, REP, dtype=torch.float64))
        got = model.query(features, coord, cell)
        expected = reference_query(model, features, coord, cell)
    torch.testing.assert_close(got, expected, atol=1e-10, rtol=0)


@pytest.mark.parametrize("local_ensemble", [False, True])
def test_lte_shapes(local_ensemble):
    torch.manual_seed(0)
    cfg = small_cfg(local_ensemble=local_ensemble)
    model = LTE(cfg, rep_dim=REP)
    lr = torch.rand(2, 3, 6, 5)
    features = model.encode(lr, torch.randn(2, REP))
    assert {k: tuple(v.shape) for k, v in features.items()} == {
        "inp": (2, 3, 6, 5), "feat": (2, 16, 6, 5), "coef": (2, 32, 6, 5), "freq": (2, 32, 6, 5)}
    torch.testing.assert_close(features["inp"], (lr - 0.5) / 0.5)
    coord, cell = torch.rand(2, 11, 2) * 2 - 1, torch.full((2, 11, 2), 0.1)
    assert model.query(features, coord, cell).shape == (2, 11, 3)
    assert model.modulated and model.receptive_radius == 2 * 2 + 3


def test_lte_zero_mlp_output_is_the_bilinear_skip():
    # With the last layer zeroed, querying the LR pixel centres must return the LR image itself.
    from asbsr.models.coords import make_cell, make_coord
    torch.manual_seed(0)
    model = LTE(small_cfg(local_ensemble=True), rep_dim=REP)
    with torch.no_grad():
        model.mlp[-1].weight.zero_()
        model.mlp[-1].bias.zero_()
        lr = torch.rand(1, 3, 4, 6)
        out = model(lr, make_coord(4, 6)[None], make_cell(4, 6, 24)[None], torch.randn(1, REP))
    torch.testing.assert_close(out.view(1, 4, 6, 3).permute(0, 3, 1, 2), lr, atol=1e-6, rtol=0)


def test_lte_without_modulation_ignores_rep_and_with_it_needs_rep():
    torch.manual_seed(0)
    lr, coord, cell = torch.rand(1, 3, 6, 6), torch.rand(1, 9, 2) * 2 - 1, torch.full((1, 9, 2), 0.2)
    plain = LTE(small_cfg(modulation=False), rep_dim=REP)
    assert not plain.modulated and plain.encoder.rep_dim is None
    assert torch.equal(plain(lr, coord, cell), plain(lr, coord, cell, torch.randn(1, REP)))
    with pytest.raises(ValueError):
        LTE(small_cfg(), rep_dim=REP)(lr, coord, cell)


def test_lte_gradients_reach_every_part():
    torch.manual_seed(0)
    model = LTE(small_cfg(local_ensemble=True), rep_dim=REP)
    out = model(torch.rand(2, 3, 6, 6), torch.rand(2, 20, 2) * 2 - 1, torch.full((2, 20, 2), 0.1),
                torch.randn(2, REP))
    F.l1_loss(out, torch.rand_like(out)).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_lte_under_bfloat16_autocast_matches_fp32_roughly():
    torch.manual_seed(0)
    model = LTE(small_cfg(), rep_dim=REP)
    args = (torch.rand(1, 3, 6, 6), torch.rand(1, 16, 2) * 2 - 1, torch.full((1, 16, 2), 0.1),
            torch.randn(1, REP))
    with torch.no_grad():
        reference = model(*args)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(*args)
    assert torch.isfinite(low).all()
    torch.testing.assert_close(low.float(), reference, atol=5e-2, rtol=0)


# ---------------------------------------------------------------- factory

def test_build_sr_model_lte_and_unknown_head():
    model = build_sr_model(small_cfg(), rep_dim=REP)
    assert isinstance(model, LTE) and model.modulated
    with pytest.raises(ValueError):
        build_sr_model(small_cfg(head="nerf"))


@pytest.mark.parametrize("head, module, name", [
    ("liif", "asbsr.models.baselines.liif", "LIIF"), ("metasr", "asbsr.models.baselines.metasr", "MetaSR"),
    ("srno", "asbsr.models.baselines.srno", "SRNO")])
def test_build_sr_model_baselines(head, module, name):
    mod = importlib.import_module(module)
    model = build_sr_model(small_cfg(head=head), rep_dim=REP)
    assert isinstance(model, getattr(mod, name))
    assert all(hasattr(model, attr) for attr in ("encode", "query", "modulated"))


@pytest.mark.parametrize("head", ["lte", "liif"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_centred_queries_decode_the_nearest_feature_alone_at_the_ensembles_value(head, dtype):
    # On LR pixel centres the area weights are 1.0 and ~5e-10 (coords.ensemble_for): decoding
    # the nearest feature alone lands within ~1e-9 of the four-neighbour blend, last row and
    # column included; off the centres it would not.
    from asbsr.models.coords import make_cell, make_coord
    torch.manual_seed(0)
    model = build_sr_model(small_cfg(head=head, local_ensemble=True), rep_dim=REP).to(dtype)
    lr = torch.rand(2, 3, 6, 7, dtype=dtype)
    coord = make_coord(6, 7, dtype=dtype).expand(2, -1, -1)
    cell = make_cell(6, 7, 42, dtype=dtype).expand(2, -1, -1)
    with torch.no_grad():
        features = model.encode(lr, torch.randn(2, REP, dtype=dtype))
        blended = model.query(features, coord, cell)
        nearest = model.query(features, coord, cell, centred=True)
        off_centre = coord + 0.3 / 7
        assert (model.query(features, off_centre, cell) - model.query(features, off_centre, cell, centred=True)
                ).abs().max() > 1e-3
    tolerance = 1e-8 if dtype == torch.float64 else 1e-6
    torch.testing.assert_close(nearest, blended, atol=tolerance, rtol=0)


def test_row_mlp_decodes_blocks_of_rows_without_autograd_with_the_same_values():
    from asbsr.models.heads import make_mlp

    torch.manual_seed(0)
    mlp = make_mlp(16, (32, 32), 3).double()
    rows = torch.randn(3 * mlp.block_rows + 5, 16, dtype=torch.float64)
    calls = []
    mlp[0].register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    whole = mlp(rows)  # autograd on: one call
    assert calls == [rows.shape[0]]
    calls.clear()
    with torch.no_grad():
        blocked = mlp(rows)
        small = mlp(rows[:100])
    assert calls == [mlp.block_rows] * 3 + [5, 100]
    torch.testing.assert_close(blocked, whole.detach(), atol=1e-12, rtol=0)
    torch.testing.assert_close(small, whole[:100].detach(), atol=1e-12, rtol=0)
    # any leading shape is one batch of rows, blocked the same way
    calls.clear()
    with torch.no_grad():
        shaped = mlp(rows[:3 * mlp.block_rows].view(3, 2, mlp.block_rows // 2, 16))
    assert calls == [mlp.block_rows] * 3 and shaped.shape == (3, 2, mlp.block_rows // 2, 3)
    torch.testing.assert_close(shaped.reshape(-1, 3), whole[:3 * mlp.block_rows].detach(), atol=1e-12, rtol=0)
    assert list(mlp.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"]
