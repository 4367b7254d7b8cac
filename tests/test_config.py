import dataclasses

import pytest

from asbsr.config import (
    METHODS, PRESETS, TABLE1_METHODS, TABLE2_METHODS, config_hash, from_dict, make_config,
    method_config, to_dict, valid_keys,
)


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_round_trip_through_dict(preset):
    config = make_config(preset)
    assert config.preset == preset
    assert from_dict(to_dict(config)) == config


def test_presets_grow_from_smoke_to_paper():
    sizes = [make_config(p).model.n_feats * make_config(p).model.n_resblocks for p in PRESETS]
    assert sizes == sorted(sizes)
    gpu, paper = make_config("gpu"), make_config("paper")
    # gpu and paper share the paper's architecture; only the schedule differs.
    assert gpu.model == paper.model
    assert (paper.model.n_resblocks, paper.model.n_feats, paper.model.width) == (16, 64, 256)
    assert paper.model.mlp == (256, 256, 256) and paper.model.local_ensemble
    assert (paper.stage2.batch_size, paper.stage2.patch_size, paper.stage2.queries) == (16, 48, 2304)
    assert paper.stage1.batch_size == 128 and paper.stage2.schedule == "step"


def test_what_the_notebooks_measure_is_sized_by_the_preset():
    smoke, cpu, gpu = (make_config(p).eval for p in ("smoke", "cpu", "gpu"))
    assert smoke.stage1_probe_patches < cpu.stage1_probe_patches
    assert smoke.kernel_probe_patches < cpu.kernel_probe_patches
    assert (smoke.table_max_side, cpu.table_max_side, gpu.table_max_side) == (96, 384, 0)
    assert (smoke.cycle_max_side, cpu.cycle_max_side) == (256, 0)  # 0: full size
    assert (cpu.table2_draws, gpu.table2_draws) == (2, 8) and make_config("paper").eval.table2_draws == 8
    assert smoke.train_ablation and not cpu.train_ablation
    # none of them enters the key that names checkpoints: changing one retrains nothing
    from asbsr.checkpoint import stage_key
    changed = make_config("cpu", {"eval.table2_draws": 5, "eval.kernel_probe_patches": 64})
    assert stage_key(changed, 1) == stage_key(make_config("cpu"), 1)


def test_dotted_overrides_and_type_coercion():
    config = make_config("cpu", {"stage2.steps": "12", "model.local_ensemble": "true",
                                 "model.mlp": [32, 16], "seed": 3})
    assert config.stage2.steps == 12 and config.model.local_ensemble is True
    assert config.model.mlp == (32, 16) and config.seed == 3


def test_unknown_key_and_preset_list_the_valid_ones():
    with pytest.raises(ValueError, match="valid keys: .*stage2.steps"):
        make_config("cpu", {"stage2.stpes": 1})
    with pytest.raises(ValueError, match="valid presets: smoke, cpu, gpu, paper"):
        make_config("laptop")


@pytest.mark.parametrize("key, value", [
    ("model.head", "transformer"), ("encoder.input", "dct"), ("degradation.kernel_sizes", (6,)),
    ("stage2.schedule", "linear"), ("stage1.batch_size", 1), ("degradation.scale_range", (0.5, 4.0)),
    ("stage2.steps", 2.5),
])
def test_invalid_values_are_rejected(key, value):
    with pytest.raises(ValueError):
        make_config("smoke", {key: value})


def test_hash_changes_with_any_value_and_sections_isolate_stages():
    base = make_config("cpu")
    assert config_hash(base) == config_hash(make_config("cpu"))
    for key in ("stage2.lr", "model.width", "degradation.lambda_range", "seed"):
        value = {"stage2.lr": 5e-4, "model.width": 64, "degradation.lambda_range": (0.2, 3.0), "seed": 7}[key]
        assert config_hash(make_config("cpu", {key: value})) != config_hash(base)
    stage1 = ("seed", "data", "degradation", "encoder", "stage1")
    changed = make_config("cpu", {"model.width": 64})
    assert config_hash(changed, stage1) == config_hash(base, stage1)


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        make_config("cpu").stage2.steps = 3


def test_methods_cover_tables():
    base = make_config("smoke")
    assert set(TABLE1_METHODS) | set(TABLE2_METHODS) <= set(METHODS)
    ours = method_config(base, "ours")
    assert ours.model.modulation and ours.stage2.cycle_weight == pytest.approx(0.1)
    assert not method_config(base, "lte").model.modulation
    assert method_config(base, "dcls_liif").model.deblur
    assert {method_config(base, m).model.head for m in TABLE1_METHODS} == {"lte", "liif", "metasr", "srno"}
    with pytest.raises(ValueError, match="valid methods"):
        method_config(base, "esrgan")


def test_every_key_is_listed():
    keys = valid_keys()
    assert "stage1.steps" in keys and "eval.scales" in keys and "preset" in keys
