"""Bad requests fail before the work, with one ``error:`` line (exit 2), and lose nothing: output
checks up front, devices, the pixel limit from the header, malformed and damaged files, zoo
merges, early argument checks of the zoo driver, and interruptions."""

from __future__ import annotations

import json
import os
import struct
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from asbsr.checkpoint import CheckpointError, atomic_save, load_checkpoint
from asbsr.lab.cli import main

from test_cli import refused


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("in") / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def zoo(trained, tmp_path_factory) -> Path:
    """A zoo folder holding the tiny trained "ours" as a model and its stage 1, with digests."""
    from asbsr.lab.zoo import export_model, export_stage1, file_sha256, write_manifest

    config, stage1, stage2 = trained
    folder = tmp_path_factory.mktemp("zoo")
    stage1_file = export_stage1(stage1, folder)
    model_file = export_model(config, stage2.model, "ours", folder)
    write_manifest({"format": "asbsr-zoo-v1", "default": "ours-smoke-s0", "default_cpu": "ours-smoke-s0",
                    "stage1": {"s1": {"file": stage1_file, "sha256": file_sha256(folder / stage1_file)}},
                    "models": {"ours-smoke-s0": {
                        "file": model_file, "method": "ours", "variant": None, "preset": "smoke",
                        "key": "k", "stage1": "s1", "sha256": file_sha256(folder / model_file),
                        "scores": {"x4": {"psnr": 20.0}}}}}, folder)
    return folder


def upscale_args(photo, out, *extra):
    # a checkpoint that does not exist: a refusal that names the output proves it came first
    return ["upscale", photo, out, "--scale", "2", "--checkpoint", "/nonexistent.pt", *extra]


# ---------------------------------------------------------------- 1. output problems up front

def test_an_output_that_is_a_folder(photo, tmp_path, capsys):
    (tmp_path / "out.png").mkdir()
    line = refused(upscale_args(photo, tmp_path / "out.png"), capsys, tmp_path / "elsewhere.png")
    assert "is a folder" in line


def test_a_format_pillow_reads_but_cannot_write(photo, tmp_path, capsys):
    out = tmp_path / "out.psd"
    line = refused(upscale_args(photo, out), capsys, out)
    assert "Pillow reads PSD but cannot write it" in line


@pytest.mark.parametrize("suffix, side, limit", [(".webp", 16400, 16383), (".jpg", 65600, 65500)])
def test_a_size_the_format_cannot_hold(suffix, side, limit, photo, tmp_path, capsys):
    out = tmp_path / f"out{suffix}"
    line = refused(["upscale", photo, out, "--size", side, 30, "--checkpoint", "/nonexistent.pt"],
                   capsys, out)
    assert f"at most {limit} pixels a side" in line


def test_icon_formats_are_refused(photo, tmp_path, capsys):
    out = tmp_path / "out.ico"
    assert "stores icons at fixed square sizes" in refused(upscale_args(photo, out), capsys, out)


def test_an_unwritable_folder(photo, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # as root, chmod would not stop us
    out = tmp_path / "out.png"
    assert "permission denied" in refused(upscale_args(photo, out), capsys, out)


def test_a_disk_without_room(photo, tmp_path, capsys, monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    out = tmp_path / "out.png"
    assert "MB free" in refused(upscale_args(photo, out), capsys, out)


def test_a_write_that_fails_at_the_end_is_one_line(trained, photo, tmp_path, capsys, monkeypatch):
    import asbsr.data

    def full_disk(image, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(asbsr.data, "save_image", full_disk)
    out = tmp_path / "out.png"
    line = refused(["upscale", photo, out, "--scale", "2", "--checkpoint", trained[2].path], capsys, out)
    assert "could not write" in line and "No space left on device" in line


def test_gif_output_says_it_is_quantised(trained, photo, tmp_path, capsys):
    out = tmp_path / "out.gif"
    assert main(["upscale", str(photo), str(out), "--scale", "2", "--checkpoint", str(trained[2].path)]) == 0
    assert "note: GIF stores 256 colours" in capsys.readouterr().err


# ---------------------------------------------------------------- 2. devices

def test_a_device_this_machine_lacks(photo, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = tmp_path / "out.png"
    line = refused(["upscale", photo, out, "--scale", "2", "--device", "cuda"], capsys, out)
    assert "no cuda device; here: cpu" in line
    assert "not a device name" in refused(["upscale", photo, out, "--scale", "2", "--device", "gpu0"],
                                          capsys, out)
    assert main(["scores", "--device", "cuda"]) == 2
    assert "no cuda device" in capsys.readouterr().err


# ---------------------------------------------------------------- 3 and 9. zoo merges and integrity

def test_merge_from_a_folder_that_is_no_zoo_fails_and_creates_nothing(tmp_path, capsys):
    from asbsr.lab.zoo_train import main as zoo_main

    target = tmp_path / "target"
    target.mkdir()
    with pytest.raises(SystemExit) as exit_info:
        zoo_main(["--merge", str(tmp_path / "typo"), "--zoo", str(target)])
    assert exit_info.value.code == 2 and "no zoo at" in capsys.readouterr().err
    assert list(target.iterdir()) == []


def test_a_damaged_file_is_refused_by_merge_and_by_load(zoo, tmp_path):
    import shutil

    from asbsr.lab.zoo import load_model, merge_zoo, read_manifest

    source = tmp_path / "source"
    shutil.copytree(zoo, source)
    model = source / read_manifest(source)["models"]["ours-smoke-s0"]["file"]
    data = bytearray(model.read_bytes())
    data[-2000] ^= 0xFF  # one flipped byte inside the weights: still a loadable zip
    model.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="damaged: its SHA-256"):
        load_model(model)
    target = tmp_path / "target"
    with pytest.raises(ValueError, match="not merged: .*damaged"):
        merge_zoo(source, target)
    assert not target.exists() or not any(target.iterdir())


def test_merge_loads_every_file_and_records_its_digest(zoo, tmp_path):
    import shutil

    from asbsr.lab.zoo import file_sha256, load_model, merge_zoo, read_manifest, write_manifest

    source = tmp_path / "source"
    shutil.copytree(zoo, source)
    manifest = read_manifest(source)
    for entry in [*manifest["models"].values(), *manifest["stage1"].values()]:
        del entry["sha256"]  # a zoo written before digests existed
    write_manifest(manifest, source)
    truncated = source / manifest["models"]["ours-smoke-s0"]["file"]
    good = truncated.read_bytes()
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match="not merged"):
        merge_zoo(source, tmp_path / "target")
    truncated.write_bytes(good)
    assert merge_zoo(source, tmp_path / "target")[-1] == "ours-smoke-s0"
    merged = read_manifest(tmp_path / "target")["models"]["ours-smoke-s0"]
    assert merged["sha256"] == file_sha256(tmp_path / "target" / merged["file"])
    load_model(tmp_path / "target" / merged["file"])


# ---------------------------------------------------------------- 4. no fixed temporary names

def test_concurrent_writers_of_one_file_never_collide(tmp_path):
    from asbsr.files import atomic_write_text

    target, errors = tmp_path / "manifest.json", []

    def write(tag):
        try:
            for i in range(150):
                atomic_write_text(target, json.dumps({"writer": tag, "i": i}))
        except Exception as error:  # pragma: no cover - what this test looks for
            errors.append(error)

    threads = [threading.Thread(target=write, args=(t,)) for t in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and json.loads(target.read_text())["i"] == 149
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


# ---------------------------------------------------------------- 5. the zoo driver checks first

@pytest.mark.parametrize("argv, message", [
    (["--variants", "nosuch"], "unknown stage-1 variant 'nosuch'"),
    (["--methods", "nosuch"], "unknown method 'nosuch'"),
    (["--set", "foo"], "--set takes KEY=VALUE"),
    (["--set", "foo=1"], "unknown config key 'foo'"),
    (["--set", "stage2.checkpoint_every=0"], "stage2.checkpoint_every must be >= 1"),
    (["--device", "cuda:7"], "cuda"),
])
def test_zoo_train_refuses_a_bad_request_before_any_step(argv, message, tmp_path, capsys, monkeypatch):
    import asbsr.lab.zoo_train as zoo_train

    monkeypatch.setattr(zoo_train, "train_zoo", lambda *a, **k: pytest.fail("training started"))
    with pytest.raises(SystemExit) as exit_info:
        zoo_train.main(["--preset", "smoke", "--zoo", str(tmp_path), "--work", str(tmp_path), *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


# ---------------------------------------------------------------- 6. the pixel limit before the decode

def test_the_pixel_limit_is_read_from_the_header(tmp_path, capsys, monkeypatch):
    import asbsr.data

    big = tmp_path / "big.png"
    Image.new("1", (8000, 8000)).save(big)  # a few kB on disk, 192 MB as RGB floats x3
    monkeypatch.setattr(asbsr.data, "read_image", lambda path: pytest.fail("decoded"))
    out = tmp_path / "out.png"
    assert "exceeds the limit of 250 MP" in refused(["upscale", big, out, "--scale", "2"], capsys, out)


def test_max_pixels_must_be_a_real_limit(photo, tmp_path, capsys):
    for bad in ("nan", "0", "-5", "lots"):
        with pytest.raises(SystemExit) as exit_info:
            main(["upscale", str(photo), str(tmp_path / "o.png"), "--scale", "2", "--max-pixels", bad])
        assert exit_info.value.code == 2
        assert "--max-pixels" in capsys.readouterr().err


# ---------------------------------------------------------------- 7. malformed but loadable files

def _checkpoint_without(trained, tmp_path, key) -> Path:
    data = load_checkpoint(trained[2].path)
    del data[key]
    path = tmp_path / f"without-{key}.pt"
    atomic_save(data, path)
    return path


@pytest.mark.parametrize("key", ["models", "step"])
def test_a_checkpoint_missing_an_entry(key, trained, photo, tmp_path, capsys):
    out = tmp_path / "out.png"
    line = refused(["upscale", photo, out, "--scale", "2", "--checkpoint",
                    _checkpoint_without(trained, tmp_path, key)], capsys, out)
    assert "is incomplete" in line and repr(key) in line


def test_nan_weights(trained, photo, tmp_path, capsys):
    data = load_checkpoint(trained[2].path)
    state = data["models"]["sr"]
    first = next(k for k, v in state.items() if v.is_floating_point())
    state[first] = torch.full_like(state[first], float("nan"))
    path = tmp_path / "nan.pt"
    atomic_save(data, path)
    out = tmp_path / "out.png"
    line = refused(["upscale", photo, out, "--scale", "2", "--checkpoint", path], capsys, out)
    assert "NaN or infinite weights" in line


@pytest.mark.parametrize("content", [b"101\n", np.random.default_rng(3).bytes(3000)])
def test_text_and_random_bytes_get_a_plain_reason(content, photo, tmp_path, capsys):
    path = tmp_path / "weights.pt"
    path.write_bytes(content)
    out = tmp_path / "out.png"
    line = refused(["upscale", photo, out, "--scale", "2", "--checkpoint", path], capsys, out)
    assert "is not a PyTorch checkpoint" in line and "weights_only" not in line


def test_a_truncated_manifest(zoo, tmp_path, capsys):
    import shutil

    folder = tmp_path / "zoo"
    shutil.copytree(zoo, folder)
    text = (folder / "MANIFEST.json").read_text()
    (folder / "MANIFEST.json").write_text(text[: len(text) // 2])
    assert main(["scores", "--zoo", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "MANIFEST.json is damaged" in err[0]


# ---------------------------------------------------------------- 8. every conversion is named

def _png_rgb16(path: Path, array: np.ndarray) -> None:
    """A 16-bit RGB PNG, written by hand (Pillow cannot write one)."""
    height, width, _ = array.shape
    raw = b"".join(b"\0" + array[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_16_bit_rgb_and_colour_profiles_are_named(tmp_path):
    from asbsr.data import read_image

    array = np.random.default_rng(0).integers(0, 65536, (12, 10, 3), dtype=np.uint16)
    _png_rgb16(tmp_path / "deep.png", array)
    loaded = read_image(tmp_path / "deep.png")
    assert any("16-bit colour image read as 8-bit" in note for note in loaded.notes)
    np.testing.assert_array_equal(np.round(loaded.image.permute(1, 2, 0).numpy() * 255), array >> 8)
    profiled = tmp_path / "profiled.png"
    Image.new("RGB", (10, 10), "red").save(profiled, icc_profile=b"\0" * 128)
    assert any("colour profile (ICC) ignored" in note for note in read_image(profiled).notes)


# ---------------------------------------------------------------- 10. loose ends

def test_orphan_temporaries_of_a_checkpoint_are_removed(tmp_path):
    from asbsr.train import remove_stale_temporaries

    path = tmp_path / "stage2-cpu-abc.pt"
    old, fresh = tmp_path / ".stage2-cpu-abc.pt.x1.tmp", tmp_path / ".stage2-cpu-abc.pt.x2.tmp"
    other = tmp_path / ".stage2-cpu-def.pt.x3.tmp"
    for p in (old, fresh, other):
        p.write_bytes(b"half")
    os.utime(old, (0, 0))
    os.utime(other, (0, 0))
    assert remove_stale_temporaries(path) == [old]
    assert fresh.exists() and other.exists()  # a write in progress, and another checkpoint's


def test_ctrl_c_is_one_line(photo, tmp_path, capsys, monkeypatch):
    import asbsr.lab.cli as cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "upscale_command", interrupted)  # build_parser looks it up by name
    assert main(["upscale", str(photo), str(tmp_path / "o.png"), "--scale", "2"]) == 130
    assert capsys.readouterr().err.strip() == "interrupted; nothing was written"


def test_an_interrupted_pipeline_writes_its_status(tmp_path, monkeypatch):
    import papermill

    from asbsr.lab.pipeline import run_pipeline

    notebooks = tmp_path / "nb"
    notebooks.mkdir()
    (notebooks / "01_a.ipynb").write_text("{}")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(papermill, "execute_notebook", interrupted)
    assert run_pipeline("smoke", tmp_path / "run", notebooks=notebooks) == 130
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert summary["status"] == "interrupted" and summary["notebooks"][0]["status"] == "interrupted"


def test_the_partial_checkpoint_note_goes_to_stderr(trained, tmp_path, capsys):
    from asbsr.lab.zoo import load_model

    data = load_checkpoint(trained[2].path)
    data["steps"] = data["step"] + 5
    path = tmp_path / "partial.pt"
    atomic_save(data, path)
    load_model(path)
    captured = capsys.readouterr()
    assert captured.out == "" and "partial checkpoint" in captured.err
