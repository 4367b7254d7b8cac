"""The weight mapping of benchmarks/side_by_side.py (asbsr -> the authors' module layout)."""

import importlib.util
from pathlib import Path

import torch

from asbsr.config import make_config, method_config
from asbsr.train import build_blind_sr, build_stage1
from asbsr.wavelet import haar_dwt

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "side_by_side.py"
spec = importlib.util.spec_from_file_location("side_by_side", SCRIPT)
side_by_side = importlib.util.module_from_spec(spec)
spec.loader.exec_module(side_by_side)


def test_band_reordering_takes_asbsr_channels_to_the_band_major_order():
    # asbsr: channel 3c + b, bands (LH, HL, HH); band-major with the bands reversed is
    # (HH, HL, LH) x colour, the order the authors' wave() produces.
    x = torch.rand(2, 3, 8, 8)
    ours = haar_dwt(x)[1]
    band_major = ours.view(2, 3, 3, 4, 4).flip(2).transpose(1, 2).reshape(2, 9, 4, 4)
    assert sorted(side_by_side.AUTHORS_CHANNEL_OF) == list(range(9))
    theirs = torch.empty_like(ours)
    theirs[:, side_by_side.AUTHORS_CHANNEL_OF] = ours
    torch.testing.assert_close(theirs, band_major, rtol=0, atol=0)


def test_reordered_first_convolution_computes_the_same_on_reordered_bands():
    config = method_config(make_config("smoke", {"encoder.normalise": False}), "ours")
    torch.manual_seed(0)
    encoder, simsiam, _ = build_stage1(config)
    mapped = side_by_side.simsiam_state(simsiam.state_dict())
    bands = haar_dwt(torch.rand(2, 3, 8, 8))[1]
    theirs = torch.empty_like(bands)
    theirs[:, side_by_side.AUTHORS_CHANNEL_OF] = bands
    first = simsiam.encoder.body[0][0]
    expected = first(bands)
    got = torch.nn.functional.conv2d(theirs, mapped["encoder.0.weight"], mapped["encoder.0.bias"], padding=1)
    torch.testing.assert_close(got, expected)


def test_every_sr_key_is_renamed_once_and_onto_the_authors_layout():
    config = method_config(make_config("smoke"), "ours")
    encoder, _, estimator = build_stage1(config)
    state = build_blind_sr(config, encoder, estimator).sr.state_dict()
    mapped = side_by_side.lte_state(state)
    assert len(mapped) == len(state)
    prefixes = ("encoder.head.0.", "encoder.body_tail.", "encoder.body.", "coef.", "freq.", "phase.", "imnet.layers.")
    assert all(key.startswith(prefixes) for key in mapped)
    assert "encoder.body.0.apt.mod.2.weight" in mapped and "encoder.body.0.body.2.bias" in mapped
    kernel = side_by_side.kernel_state(estimator.state_dict())
    assert sorted(kernel) == sorted(f"{p}.{k}" for p in ("decoder.0", "decoder.2", "dec.0", "dec.1", "dec.2", "dec.3")
                                    for k in ("weight", "bias"))
