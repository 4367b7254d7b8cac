"""Zoo export/load, checkpoint validation, and the zoo driver's resumability."""

import json

import pytest
import torch

from asbsr.checkpoint import FORMAT, CheckpointError, atomic_save, load_checkpoint, stage_key
from asbsr.config import make_config, method_config
from asbsr.inference import upscale
from asbsr.lab.zoo import (
    export_model, export_stage1, find_model, find_stage1, load_model, read_manifest, write_manifest,
)


def test_zoo_round_trip_gives_the_same_outputs_in_fp16_tolerance(trained, tmp_path):
    config, stage1, stage2 = trained
    export_stage1(stage1, tmp_path)
    name = export_model(config, stage2.model, "ours", tmp_path)
    model, loaded_config = load_model(tmp_path / name)
    assert loaded_config == config
    lr = torch.rand(1, 3, 20, 18)
    expected = upscale(stage2.model, lr, scale=2.5)
    torch.testing.assert_close(upscale(model, lr, scale=2.5), expected, atol=2e-2, rtol=0)
    assert not model.training


def test_stage2_checkpoint_loads_directly_and_exactly(trained):
    config, _, stage2 = trained
    model, loaded_config = load_model(stage2.path)
    lr = torch.rand(1, 3, 17, 21)
    torch.testing.assert_close(upscale(model, lr, scale=1.7), upscale(stage2.model, lr, scale=1.7))


def test_wrong_files_raise_checkpoint_error(trained, tmp_path):
    _, stage1, stage2 = trained
    with pytest.raises(CheckpointError, match="not an SR model"):
        load_model(stage1.path)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
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


def test_zoo_driver_skips_finished_and_claimed_work(tiny_overrides, tmp_path, capsys):
    from asbsr.lab.zoo import file_lock
    from asbsr.lab.zoo_train import train_zoo

    zoo, work = tmp_path / "zoo", tmp_path / "work"
    run = lambda methods, variants: train_zoo("smoke", [0], methods, variants, work, zoo,
                                              tiny_overrides, "test", progress=False)
    # another process holds "liif": this one leaves it alone and trains the rest
    with file_lock(work / "locks" / "liif-smoke-s0.lock"):
        run(["lte", "liif"], ["contrastive_only"])
    out = capsys.readouterr().out
    assert "liif-smoke-s0: another process is training it, skipped" in out
    manifest = read_manifest(zoo)
    assert sorted(manifest["models"]) == ["lte-smoke-s0", "ours-smoke-s0-contrastive_only"]
    assert {e["variant"] for e in manifest["stage1"].values()} == {"paper", "contrastive_only"}
    ablation = manifest["models"]["ours-smoke-s0-contrastive_only"]
    assert ablation["variant"] == "contrastive_only"
    assert ablation["stage1"] != manifest["models"]["lte-smoke-s0"]["stage1"]
    assert manifest["default"] is None  # only "ours" on the paper's stage 1 can be the default
    for entry in manifest["models"].values():
        assert (zoo / entry["file"]).exists() and set(entry["scores"]) == {"x2", "x3", "x4"}
    # run again: finished work is skipped, the freed model is trained, nothing else is redone
    run(["lte", "liif"], ["contrastive_only"])
    out = capsys.readouterr().out
    assert "lte-smoke-s0: in the zoo already, skipped" in out
    assert "ours-smoke-s0-contrastive_only: in the zoo already, skipped" in out
    assert "liif-smoke-s0: trained" in out
    assert sorted(read_manifest(zoo)["models"]) == ["liif-smoke-s0", "lte-smoke-s0",
                                                    "ours-smoke-s0-contrastive_only"]
    manifest = read_manifest(zoo)
    from asbsr.data import set_digest
    assert manifest["reference_val_digest"] == set_digest("val")
    entry = manifest["models"]["liif-smoke-s0"]
    assert entry["val_digest"] == set_digest("val")
    # the train-vs-validation curve: one point per checkpoint, bicubic's beside it
    assert [p["step"] for p in entry["curves"]["points"]] == [1, 2]
    assert set(entry["curves"]["bicubic"]) == {"train_psnr", "val_psnr"}
    # bicubic's scores are measured again when the validation photos are not those it was run on
    manifest["reference"]["bicubic"] = "stale"
    manifest["reference_val_digest"] = "another set"
    write_manifest(manifest, zoo)
    run(["lte"], [])
    assert read_manifest(zoo)["reference"]["bicubic"] != "stale"


def test_manifest_updates_from_two_writers_keep_both(tmp_path):
    from asbsr.lab.zoo import update_manifest

    update_manifest(lambda m: m["models"].__setitem__("a", {"method": "lte"}), tmp_path)
    update_manifest(lambda m: m["models"].__setitem__("b", {"method": "lte"}), tmp_path)
    assert sorted(read_manifest(tmp_path)["models"]) == ["a", "b"]


def _zoo_with(folder, models: dict, stage1: dict, reference=None):
    """A zoo folder whose manifest lists ``models`` / ``stage1`` and holds a small file for each."""
    manifest = read_manifest(folder)
    manifest["stage1"].update(stage1)
    manifest["models"].update(models)
    if reference:
        manifest["reference"] = reference
    write_manifest(manifest, folder)
    for entry in [*models.values(), *stage1.values()]:
        # a small real checkpoint whose one weight names the file: merges load what they copy
        atomic_save({"format": FORMAT, "models": {"sr": {"w": torch.tensor([float(len(entry["file"]))])}},
                     "name": entry["file"]}, folder / entry["file"])
    return folder


def _ours(name, key, stage1, x4):
    return {name: {"file": f"{name}.pt", "method": "ours", "variant": None, "key": key,
                   "preset": name.split("-")[1], "stage1": stage1, "scores": {"x4": {"psnr": x4}}}}


def test_merge_adds_new_models_once_and_picks_the_best_default(tmp_path):
    from asbsr.lab.zoo import merge_zoo

    here = _zoo_with(tmp_path / "here", _ours("ours-cpu-s0", "cpu-a", "cpu-s1", 28.9),
                     {"cpu-s1": {"file": "stage1-cpu-s1.pt"}}, {"bicubic": {"x4": 27.3}})
    there = _zoo_with(tmp_path / "there",
                      {**_ours("ours-gpu-s0", "gpu-b", "gpu-s1", 29.0),
                       **_ours("ours-cpu-s0", "cpu-a", "cpu-s1", 28.9)},
                      {"gpu-s1": {"file": "stage1-gpu-s1.pt"}}, {"bicubic": {"x4": 27.3}})
    assert merge_zoo(there, here) == ["stage1-gpu-s1.pt", "ours-gpu-s0"]
    manifest = read_manifest(here)
    assert sorted(manifest["models"]) == ["ours-cpu-s0", "ours-gpu-s0"]
    assert manifest["default"] == "ours-gpu-s0"  # the better x4 PSNR
    assert manifest["default_cpu"] == "ours-cpu-s0"  # the best one sized for a CPU
    assert (here / "ours-gpu-s0.pt").read_bytes() == (there / "ours-gpu-s0.pt").read_bytes()
    assert (here / "stage1-gpu-s1.pt").stat().st_mode & 0o777 == 0o644
    assert merge_zoo(there, here) == []  # nothing new the second time
    assert not list(here.glob("*.tmp"))


def test_defaults_compare_only_scores_on_the_reference_photos():
    from asbsr.lab.zoo import choose_default

    models = {**_ours("ours-gpu-s0", "g", "g1", 30.5), **_ours("ours-cpu-s0", "c", "c1", 30.4),
              **_ours("ours-cpu-s1", "c", "c1", 31.0)}
    for name, digest in [("ours-gpu-s0", "new"), ("ours-cpu-s0", "new"), ("ours-cpu-s1", "old")]:
        models[name]["val_digest"] = digest
    manifest = {"models": models, "reference_val_digest": "new"}
    choose_default(manifest)
    # ours-cpu-s1's 31.0 was measured on other photos: not compared
    assert (manifest["default"], manifest["default_cpu"]) == ("ours-gpu-s0", "ours-cpu-s0")
    manifest["reference_val_digest"] = "old"
    choose_default(manifest)
    assert (manifest["default"], manifest["default_cpu"]) == ("ours-cpu-s1", "ours-cpu-s1")


def test_merge_refuses_a_name_with_another_config_and_a_missing_file(tmp_path):
    from asbsr.lab.zoo import merge_zoo

    here = _zoo_with(tmp_path / "here", _ours("ours-gpu-s0", "gpu-old", "gpu-s1", 29.0),
                     {"gpu-s1": {"file": "stage1-gpu-s1.pt"}})
    before = read_manifest(here)
    other = _zoo_with(tmp_path / "other", _ours("ours-gpu-s0", "gpu-new", "gpu-s1", 29.5),
                      {"gpu-s1": {"file": "stage1-gpu-s1.pt"}})
    with pytest.raises(ValueError, match=r"ours-gpu-s0: .* with gpu-new \(another config under the same name\)"):
        merge_zoo(other, here)
    orphan = _zoo_with(tmp_path / "orphan", _ours("ours-gpu-s1", "gpu-c", "gpu-s9", 29.5), {})
    with pytest.raises(ValueError, match="stage-1 run gpu-s9 is in neither zoo"):
        merge_zoo(orphan, here)
    lost = _zoo_with(tmp_path / "lost", _ours("ours-gpu-s2", "gpu-d", "gpu-s1", 29.5), {})
    (lost / "ours-gpu-s2.pt").unlink()
    with pytest.raises(ValueError, match="listed in .* but missing"):
        merge_zoo(lost, here)
    assert read_manifest(here) == before
    assert sorted(p.name for p in here.iterdir()) == ["MANIFEST.json", "ours-gpu-s0.pt", "stage1-gpu-s1.pt"]


def test_the_training_photos_are_part_of_the_checkpoint_key(tmp_path):
    import os
    import shutil

    from asbsr.checkpoint import LEGACY_TRAIN_DIGEST
    from asbsr.data import DATA_DIR, image_paths, set_digest

    assert set_digest("train") != LEGACY_TRAIN_DIGEST  # today's photos are not the first set
    folder = tmp_path / "photos"
    shutil.copytree(DATA_DIR / "train", folder)
    config = make_config("smoke", {"data.train": str(folder)})
    keys = {stage: stage_key(config, stage) for stage in (1, 2)}
    first = image_paths(str(folder))[0]
    os.utime(first, ns=(1, 1))  # same bytes, another time stamp: the same photos
    assert {stage: stage_key(config, stage) for stage in (1, 2)} == keys
    seen = set(keys.values())
    data = bytearray(first.read_bytes())
    data[-20] ^= 1  # one changed byte
    first.write_bytes(bytes(data))
    for change in ("changed", "removed", "added"):
        if change == "removed":
            first.unlink()
        if change == "added":
            shutil.copyfile(DATA_DIR / "val" / "dogs.png", folder / "dogs.png")
        now = {stage_key(config, stage) for stage in (1, 2)}
        assert not now & seen, change
        seen |= now
    with pytest.raises(CheckpointError, match="training photos"):
        stage_key(make_config("smoke", {"data.train": str(tmp_path / "gone")}), 1)


def test_every_zoo_model_is_keyed_by_the_config_and_photos_it_was_trained_with():
    """A change of the training photos (or of a key's meaning) without retraining the zoo fails
    here: the stored keys must be what the stored configs hash to today, with today's photos
    unless the entry names the (earlier) photos the model was trained on."""
    from asbsr.config import from_dict
    from asbsr.data import set_digest
    from asbsr.lab.zoo import ZOO_DIR, read_manifest

    manifest = read_manifest(ZOO_DIR)
    today = set_digest("train")
    for name, entry in manifest["models"].items():
        stored = load_checkpoint(ZOO_DIR / entry["file"], map_location="cpu")
        config = from_dict(stored["config"])
        photos = entry.get("train_digest")
        assert photos in (None, today) or entry["preset"] != "cpu", name  # the cpu zoo is current
        assert stage_key(config, 2, photos) == entry["key"] == stored["key"], name
        if entry.get("stage1"):
            assert stage_key(config, 1, photos) == entry["stage1"], name
            assert entry["stage1"] in manifest["stage1"], name


def test_zoo_stage1_files_hold_e_and_m_without_the_simsiam_heads(trained, tmp_path):
    from asbsr.lab.zoo import obtain_stage1

    config, stage1, _ = trained
    name = export_stage1(stage1, tmp_path)
    stored = load_checkpoint(tmp_path / name)
    assert set(stored["models"]) == {"encoder", "estimator"}
    manifest = read_manifest(tmp_path)
    manifest["stage1"][stage_key(config, 1)] = {"file": name}
    write_manifest(manifest, tmp_path)
    loaded = obtain_stage1(config, tmp_path / "work", zoo=tmp_path, progress=False)
    assert loaded.status.startswith("loaded zoo stage 1")
    lr = torch.rand(3, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    stage1.encoder.eval(), stage1.estimator.eval()
    with torch.no_grad():
        expected = stage1.estimator(stage1.encoder(lr))
        got = loaded.estimator(loaded.encoder(lr))
    torch.testing.assert_close(got, expected, atol=2e-3, rtol=2e-2)  # fp16 storage
    # a zoo file of the earlier layout (E inside its SimSiam heads) loads as well
    old = tmp_path / "old.pt"
    atomic_save({**stored, "models": {"simsiam": stage1.simsiam.state_dict(),
                                      "estimator": stage1.estimator.state_dict()}}, old)
    manifest["stage1"][stage_key(config, 1)] = {"file": "old.pt"}
    write_manifest(manifest, tmp_path)
    with torch.no_grad():
        again = obtain_stage1(config, tmp_path / "work", zoo=tmp_path, progress=False)
        torch.testing.assert_close(again.estimator(again.encoder(lr)), expected)


def test_every_shipped_zoo_file_has_its_digest_and_matches_it():
    from asbsr.lab.zoo import ZOO_DIR, file_sha256, read_manifest

    manifest = read_manifest(ZOO_DIR)
    entries = [*manifest["models"].values(), *manifest["stage1"].values()]
    assert entries and all(entry.get("sha256") for entry in entries)
    for entry in entries:
        assert file_sha256(ZOO_DIR / entry["file"]) == entry["sha256"], entry["file"]


def test_record_digests_fills_only_what_is_missing(tmp_path):
    import shutil

    from asbsr.lab.zoo import ZOO_DIR, read_manifest, record_digests, write_manifest

    shutil.copy(ZOO_DIR / "lte-cpu-s0.pt", tmp_path)
    write_manifest({"format": "asbsr-zoo-v1", "stage1": {}, "models": {
        "lte-cpu-s0": {"file": "lte-cpu-s0.pt", "method": "lte"}}}, tmp_path)
    assert record_digests(tmp_path) == ["lte-cpu-s0.pt"]
    assert len(read_manifest(tmp_path)["models"]["lte-cpu-s0"]["sha256"]) == 64
    assert record_digests(tmp_path) == []
