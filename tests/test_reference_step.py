"""The paper-size training steps and inference reproduce the recorded reference to 1e-5 relative
(``asbsr.lab.reference``): what any change made for speed must keep."""

import copy
import json

import pytest
import torch

from asbsr.lab import reference


@pytest.fixture(scope="module")
def recorded():
    return json.loads(reference.REFERENCE_FILE.read_text())


@pytest.fixture(scope="module")
def current():
    return reference.compute("cpu")


def test_steps_and_inference_reproduce_the_reference(recorded, current):
    assert reference.compare(recorded, current) == []


def test_the_reference_covers_both_stages_and_inference(recorded):
    assert any(k.startswith("stage1/grad/simsiam.") for k in recorded)
    assert any(k.startswith("stage1/grad/estimator.") for k in recorded)
    assert any(k.startswith("stage2/grad/sr.encoder.blocks.") for k in recorded)
    assert any(k.startswith("stage2/grad/sr.mlp.") for k in recorded)
    assert recorded["inference/sr"]["shape"] == [1, 3, 168, 168]


def test_a_change_above_the_tolerance_is_caught(recorded):
    key = "stage2/grad/sr.mlp.0.weight"
    changed = copy.deepcopy(recorded)
    changed[key]["projections"] = [p + 3e-5 * changed[key]["norm"] for p in changed[key]["projections"]]
    assert [line.split(":")[0] for line in reference.compare(recorded, changed)] == [key]
    changed[key] = reference.digest(key, torch.zeros(changed[key]["shape"]))
    assert reference.compare(recorded, changed)


def test_a_zero_gradient_must_stay_zero(recorded):
    largest = max(d["norm"] for k, d in recorded.items() if k.startswith("stage1/grad/"))
    zeros = [k for k, d in recorded.items()
             if k.startswith("stage1/grad/") and d["norm"] < reference.ZERO_GRADIENT * largest]
    assert zeros, "E's convolution biases ahead of BatchNorm have no true gradient"
    changed = copy.deepcopy(recorded)
    changed[zeros[0]]["norm"] = largest * 1e-3
    assert reference.compare(recorded, changed)[0].startswith(zeros[0])


def test_digest_difference_estimates_the_relative_norm_of_a_change():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(10_000, generator=generator, dtype=torch.float64)
    noise = torch.randn(10_000, generator=generator, dtype=torch.float64)
    gap = reference.difference(reference.digest("x", x), reference.digest("x", x + 1e-3 * noise))
    assert 0.3e-3 < gap < 3e-3
