"""Zoo export/load, checkpoint validation, and the zoo driver's resumability."""

import json

import pytest
import torch

from asbsr.checkpoint import CheckpointError, atomic_save, load_checkpoint, stage_key
from asbsr.config import make_config, method_config
from asbsr.zoo import (
    export_model, export_stage1, find_model, find_stage1, load_model, read_manifest, write_manifest,
)


def test_zoo_round_trip_gives_the_same_outputs_in_fp16_tolerance(trained, tmp_path):
    config, stage1, stage2 = trained
    export_stage1(stage1, tmp_path)
    name = export_model(config, stage2.model, "ours", tmp_path)
    model, loaded_config = load_model(tmp_path / name)
    assert loaded_config == config
    lr = torch.rand(1, 3, 20, 18)
    expected = stage2.model.upscale(lr, scale=2.5)
    torch.testing.assert_close(model.upscale(lr, scale=2.5), expected, atol=2e-2, rtol=0)
    assert not model.training


def test_stage2_checkpoint_loads_directly_and_exactly(trained):
    config, _, stage2 = trained
    model, loaded_config = load_model(stage2.path)
    lr = torch.rand(1, 3, 17, 21)
    torch.testing.assert_close(model.upscale(lr, scale=1.7), stage2.model.upscale(lr, scale=1.7))


def test_wrong_files_raise_checkpoint_error(trained, tmp_path):
    _, stage1, stage2 = trained
    with pytest.raises(CheckpointError, match="not an SR model"):
        load_model(stage1.path)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_model(junk)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "missing.pt")
    # weights of another architecture under this config: the message names the part
    data = load_checkpoint(stage2.path)
    data["config"]["model"]["n_feats"] = 12
    other = tmp_path / "other.pt"
    atomic_save(data, other)
    with pytest.raises(CheckpointError, match="SR module does not fit"):
        load_model(other)


def test_weights_only_reload_and_atomic_save_leaves_no_partial_file(trained, tmp_path):
    _, _, stage2 = trained
    torch.load(stage2.path, weights_only=True)
    target = tmp_path / "keep.pt"
    atomic_save({"a": 1}, target)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    with pytest.raises(RuntimeError):
        atomic_save({"bad": Unpicklable()}, target)
    assert torch.load(target, weights_only=True) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["keep.pt"]


def test_find_by_exact_config_key(trained, tiny_overrides, tmp_path):
    config, stage1, stage2 = trained
    export_stage1(stage1, tmp_path)
    name = export_model(config, stage2.model, "ours", tmp_path)
    manifest = read_manifest(tmp_path)
    manifest["stage1"][stage_key(config, 1)] = {"file": f"stage1-{stage_key(config, 1)}.pt"}
    manifest["models"]["ours-smoke-s0"] = {"file": name, "key": stage_key(config, 2)}
    write_manifest(manifest, tmp_path)
    assert find_model(config, tmp_path).name == name
    assert find_stage1(config, tmp_path) is not None
    changed = make_config("smoke", {**tiny_overrides, "stage2.lr": 5e-4})
    assert find_model(method_config(changed, "ours"), tmp_path) is None
    assert json.loads((tmp_path / "MANIFEST.json").read_text())["models"]["ours-smoke-s0"]["file"] == name
