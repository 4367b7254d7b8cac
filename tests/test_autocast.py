"""The mixed-precision policy: bf16 autocast for the networks, fp32 for the LTE sinusoid.

``asbsr.train.autocast`` runs training under bf16 autocast on CUDA (off on a CPU). Inside the LTE
head the phase ``π (F·δ + φ)`` and its cos / sin are computed with autocast disabled, in at
least fp32, because a bf16 argument of tens of radians keeps only 2-3 significant bits.

Measured here (CPU bf16 autocast, random weights, 2 x 3000 queries on a 24 x 24 input, seeds
0-2, each preset's architecture, local ensemble off and on): the largest |bf16 - fp32| of a
query is 0.0037-0.0065 on the [0, 1] scale; with the frequency convolution's weights x10 (the
magnitude a trained LTE reaches) 0.0037-0.0061. The head casts the MLP's result back to fp32, so
the output itself is not rounded to bf16. ``TOLERANCE`` = 0.02 leaves a 3x margin.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.overrides import TorchFunctionMode

from asbsr.config import make_config
from asbsr.models.lte import LTE
from asbsr.train import autocast

TOLERANCE = 0.02  # max |bf16 - fp32| of a query on the [0, 1] scale (measured <= 0.0065)
REP_DIM = 64


class SinusoidDtypes(TorchFunctionMode):
    """Records the dtypes of the sinusoid's path in the LTE head called under it: the argument
    of every torch.cos / torch.sin (``dtypes``) and the result of the phase projection, the
    linear map of the 2-d cell (``phase_dtypes``). Type promotion alone would make the cos
    argument fp32 (bf16 frequencies times fp32 coordinates); the phase shows the head's own
    choice, since a linear map under autocast returns bf16 unless autocast is switched off."""

    def __init__(self):
        super().__init__()
        self.dtypes: set[torch.dtype] = set()
        self.phase_dtypes: set[torch.dtype] = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        if func in (torch.cos, torch.sin):
            self.dtypes.add(args[0].dtype)
        if func is torch.nn.functional.linear and args[0].shape[-1] == 2:
            self.phase_dtypes.add(result.dtype)
        return result


def make_lte(preset: str, local_ensemble: bool, seed: int = 0, freq_gain: float = 1.0) -> LTE:
    torch.manual_seed(seed)
    config = make_config(preset, {"model.local_ensemble": local_ensemble}).model
    model = LTE(config, rep_dim=REP_DIM).eval()
    with torch.no_grad():
        model.freq.weight.mul_(freq_gain)
        model.freq.bias.mul_(freq_gain)
    return model


def make_inputs(seed: int = 0, batch: int = 2, side: int = 24, queries: int = 3000):
    generator = torch.Generator().manual_seed(seed)
    lr = torch.rand(batch, 3, side, side, generator=generator)
    rep = torch.randn(batch, REP_DIM, generator=generator)
    coord = torch.rand(batch, queries, 2, generator=generator) * 2 - 1
    cell = torch.full((batch, queries, 2), 2 / (3 * side))  # an x3 output
    return lr, rep, coord, cell


def query(model, lr, rep, coord, cell, bf16: bool) -> torch.Tensor:
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        return model.query(model.encode(lr, rep), coord, cell)


@pytest.mark.parametrize("preset, local_ensemble, freq_gain", [
    ("smoke", False, 1.0), ("cpu", True, 1.0), ("gpu", True, 1.0),  # the presets as trained
    ("cpu", False, 10.0), ("gpu", True, 10.0),  # frequencies as large as a trained LTE's
])
def test_bf16_query_stays_close_to_fp32(preset, local_ensemble, freq_gain):
    model = make_lte(preset, local_ensemble, freq_gain=freq_gain)
    inputs = make_inputs()
    reference = query(model, *inputs, bf16=False)
    low = query(model, *inputs, bf16=True)
    assert reference.dtype == low.dtype == torch.float32  # the head returns fp32 under autocast
    lr, rep = inputs[:2]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert model.encode(lr, rep)["coef"].dtype == torch.bfloat16  # autocast really ran
    error = (low - reference).abs().max().item()
    assert 0 < error < TOLERANCE


def test_sinusoid_argument_is_fp32_under_autocast():
    model = make_lte("cpu", local_ensemble=True)
    lr, rep, coord, cell = make_inputs()
    mlp_outputs = []
    hook = model.mlp[0].register_forward_hook(lambda m, i, out: mlp_outputs.append(out.dtype))
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            features = model.encode(lr, rep)
            with SinusoidDtypes() as sinusoid:
                model.query(features, coord, cell)
    finally:
        hook.remove()
    # The frequency map arrives in bf16 (a convolution under autocast) and the MLP runs in
    # bf16, yet cos and sin see fp32: the head casts up before forming the phase.
    assert features["freq"].dtype == torch.bfloat16
    assert mlp_outputs and set(mlp_outputs) == {torch.bfloat16}  # one entry per block of rows
    assert sinusoid.phase_dtypes == {torch.float32}
    assert sinusoid.dtypes == {torch.float32}


def test_sinusoid_follows_an_fp64_model():
    model = make_lte("smoke", local_ensemble=False).double()
    lr, rep, coord, cell = (t.double() for t in make_inputs(queries=100))
    with torch.no_grad(), SinusoidDtypes() as sinusoid:
        out = model.query(model.encode(lr, rep), coord, cell)
    assert sinusoid.dtypes == sinusoid.phase_dtypes == {torch.float64}
    assert out.dtype == torch.float64


def test_training_autocast_is_bf16_on_cuda_and_off_on_cpu():
    linear = torch.nn.Linear(4, 4)
    with autocast(torch.device("cpu")):
        assert linear(torch.randn(2, 4)).dtype == torch.float32
    with warnings.catch_warnings():  # a CPU-only build warns that CUDA autocast is unavailable
        warnings.simplefilter("ignore")
        context = autocast(torch.device("cuda"))
    assert context.fast_dtype == torch.bfloat16
