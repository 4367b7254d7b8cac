"""The ``asbsr upscale`` command: its error paths, its input conversions, and the entry point.

Every refusal must give one line on stderr starting with ``error:``, exit code 2, and leave the
output path as it was (absent, or the old file untouched). The commands run in-process through
``asbsr.lab.cli.main`` (fast); one test runs the installed ``asbsr`` console script.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from asbsr.config import method_config
from asbsr.train import train_stage2
from asbsr.lab.cli import main
from asbsr.lab.zoo import export_model


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Small input files of every kind the tests need."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(folder / "rgb.png")
    Image.fromarray(rng.integers(0, 256, (20, 24), dtype=np.uint8)).save(folder / "gray.png")
    Image.fromarray(rng.integers(0, 256, (20, 24, 4), dtype=np.uint8)).save(folder / "rgba.png")
    Image.fromarray(rng.integers(0, 65536, (20, 24), dtype=np.uint16)).save(folder / "deep.png")
    Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).save(folder / "tiny.png")
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / "square.png")
    (folder / "noise.png").write_bytes(rng.bytes(600))
    assert Image.open(folder / "deep.png").mode.startswith("I;16")
    return folder


def refused(argv, capsys, output: Path) -> str:
    """Run a command that must be refused; return its one ``error:`` line."""
    before = output.read_bytes() if output.exists() else None
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    after = output.read_bytes() if output.exists() else None
    assert after == before, "a refused command must not create or change the output"
    assert not list(output.parent.glob(f".{output.name}*")), "no temporary file left behind"
    return lines[0]


def test_unreadable_image(images, tmp_path, capsys):
    out = tmp_path / "out.png"
    line = refused(["upscale", images / "noise.png", out, "--scale", "2"], capsys, out)
    assert "noise.png" in line and "cannot read as an image" in line


def test_missing_image_leaves_an_existing_output_untouched(images, tmp_path, capsys):
    out = tmp_path / "out.png"
    out.write_bytes(b"precious")
    line = refused(["upscale", images / "absent.png", out, "--scale", "2"], capsys, out)
    assert "no such file" in line
    assert out.read_bytes() == b"precious"


def test_tiny_image(images, tmp_path, capsys):
    out = tmp_path / "out.png"
    line = refused(["upscale", images / "tiny.png", out, "--scale", "2"], capsys, out)
    assert "4x4" in line and "at least 8" in line


@pytest.mark.parametrize("scale", ["0", "-1", "nan", "inf", "two"])
def test_bad_scales_are_argparse_errors(scale, images, tmp_path, capsys):
    out = tmp_path / "out.png"
    with pytest.raises(SystemExit) as exit_info:
        main(["upscale", str(images / "rgb.png"), str(out), "--scale", scale])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("asbsr upscale: error: argument --scale:"), err
    assert repr(scale) in last
    assert not out.exists()


def test_absurd_output_size_is_refused_with_the_limit(images, tmp_path, capsys):
    out = tmp_path / "out.png"
    line = refused(["upscale", images / "square.png", out, "--scale", "1000"], capsys, out)
    assert "64000x64000" in line and "exceeds the limit of 250 MP" in line
    assert "--max-pixels" in line


def test_unknown_output_suffix(images, tmp_path, capsys):
    out = tmp_path / "out.xyz"
    line = refused(["upscale", images / "rgb.png", out, "--scale", "2"], capsys, out)
    assert "unknown image type '.xyz'" in line


def test_stage1_checkpoint_is_not_an_sr_model(trained, images, tmp_path, capsys):
    _, stage1, _ = trained
    out = tmp_path / "out.png"
    line = refused(["upscale", images / "rgb.png", out, "--scale", "2",
                    "--checkpoint", stage1.path], capsys, out)
    assert "'stage1', not an SR model" in line


def test_random_bytes_checkpoint(images, tmp_path, capsys):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(np.random.default_rng(1).bytes(500))
    out = tmp_path / "out.png"
    line = refused(["upscale", images / "rgb.png", out, "--scale", "2", "--checkpoint", junk],
                   capsys, out)
    assert "junk.pt is not a PyTorch checkpoint" in line and "weights_only" not in line


def test_zoo_model_without_its_stage1_file(trained, images, tmp_path, capsys):
    config, _, stage2 = trained
    name = export_model(config, stage2.model, "ours", tmp_path)  # no export_stage1 beside it
    out = tmp_path / "out.png"
    line = refused(["upscale", images / "rgb.png", out, "--scale", "2",
                    "--checkpoint", tmp_path / name], capsys, out)
    assert "stage1-" in line and "does not exist" in line


@pytest.mark.parametrize("name, notes", [
    ("gray.png", ["grayscale converted to RGB"]),
    ("rgba.png", ["alpha channel dropped (composited on white)"]),
    ("deep.png", ["16-bit image scaled to [0, 1] (divided by 65535)",
                  "grayscale converted to RGB"]),
])
def test_conversions_work_and_say_so(name, notes, trained, images, tmp_path, capsys):
    _, _, stage2 = trained
    out = tmp_path / "out.png"
    assert main(["upscale", str(images / name), str(out), "--scale", "2",
                 "--checkpoint", str(stage2.path)]) == 0
    captured = capsys.readouterr()
    assert [line for line in captured.err.splitlines() if line.startswith("note: ")] == \
        [f"note: {note}" for note in notes]
    assert "error" not in captured.err
    with Image.open(out) as result:
        assert result.mode == "RGB" and result.size == (48, 40)


def test_size_gives_exactly_that_size(trained, images, tmp_path, capsys):
    _, _, stage2 = trained
    out = tmp_path / "out.jpg"
    assert main(["upscale", str(images / "rgb.png"), str(out), "--size", "53", "31",
                 "--checkpoint", str(stage2.path)]) == 0
    with Image.open(out) as result:
        assert result.size == (53, 31)
    assert "(53x31" in capsys.readouterr().out


def test_scale_above_the_training_range_warns(trained, images, tmp_path, capsys):
    _, _, stage2 = trained
    out = tmp_path / "out.png"
    assert main(["upscale", str(images / "rgb.png"), str(out), "--scale", "6",
                 "--checkpoint", str(stage2.path)]) == 0
    err = capsys.readouterr().err
    assert "warning: scale 6 is above the training range (1-4)" in err
    with Image.open(out) as result:
        assert result.size == (144, 120)


def test_bad_tile_and_chunk(trained, images, tmp_path, capsys):
    _, _, stage2 = trained
    out = tmp_path / "out.png"
    for option in (["--tile", "-1"], ["--chunk", "0"]):
        line = refused(["upscale", images / "rgb.png", out, "--scale", "2",
                        "--checkpoint", stage2.path, *option], capsys, out)
        assert "--tile must be >= 0 and --chunk >= 1" in line


def test_tiles_are_refused_for_srno(trained, images, tmp_path, capsys):
    config, stage1, _ = trained
    photo = torch.rand(3, 100, 104, generator=torch.Generator().manual_seed(0))
    srno = train_stage2(method_config(config, "srno"), stage1, tmp_path, progress=False,
                        images=[photo])
    out = tmp_path / "out.png"
    line = refused(["upscale", images / "rgb.png", out, "--scale", "2", "--checkpoint", srno.path,
                    "--tile", "8"], capsys, out)
    assert "tiling is not exact for SRNO" in line
    assert main(["upscale", str(images / "rgb.png"), str(out), "--scale", "2",
                 "--checkpoint", str(srno.path)]) == 0  # untiled, SRNO works


def test_tiles_give_the_same_image(trained, images, tmp_path, capsys):
    _, _, stage2 = trained
    whole, tiled = tmp_path / "whole.png", tmp_path / "tiled.png"
    common = ["--scale", "2.5", "--checkpoint", str(stage2.path)]
    assert main(["upscale", str(images / "square.png"), str(whole), *common]) == 0
    assert main(["upscale", str(images / "square.png"), str(tiled), *common, "--tile", "16"]) == 0
    a, b = (np.asarray(Image.open(p)).astype(int) for p in (whole, tiled))
    assert a.shape == (160, 160, 3) and np.abs(a - b).max() <= 1  # 8-bit rounding at most


def test_console_script_is_installed(trained, images, tmp_path):
    _, _, stage2 = trained
    script = Path(sys.executable).with_name("asbsr")
    script = script if script.exists() else shutil.which("asbsr")
    assert script, "the asbsr console script is not installed (pip install -e .)"
    out = tmp_path / "out.png"
    done = subprocess.run([str(script), "upscale", str(images / "rgb.png"), str(out),
                           "--scale", "1.5", "--checkpoint", str(stage2.path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    with Image.open(out) as result:
        assert result.size == (36, 30)
    bad = subprocess.run([str(script), "upscale", str(images / "tiny.png"), str(out),
                          "--scale", "2"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ")


def test_scores_remeasures_zoo_models_against_what_the_manifest_stored(trained, tmp_path, capsys):
    from asbsr.data import set_digest
    from asbsr.lab.benchmark import bicubic_upscaler, model_upscaler
    from asbsr.lab.zoo import export_stage1, load_model, read_manifest, update_manifest
    from asbsr.lab.zoo_train import validation_scores

    config, stage1, stage2 = trained
    export_stage1(stage1, tmp_path)
    name = export_model(config, stage2.model, "ours", tmp_path)
    model, _ = load_model(tmp_path / name)
    stored = validation_scores(model_upscaler(model, config.eval.chunk), config, tmp_path / "cache")
    stored["x3"]["psnr"] += 0.25  # as if recorded from slightly different weights
    reference = validation_scores(bicubic_upscaler, config, tmp_path / "cache")
    update_manifest(lambda m: (m["models"].__setitem__("ours-smoke-s0", {"file": name, "scores": stored}),
                               m.setdefault("reference", {}).__setitem__("bicubic", reference)), tmp_path)
    assert main(["scores", "--zoo", str(tmp_path), "ours-smoke-s0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    bicubic = next(line for line in lines if line.startswith("| bicubic |"))
    ours = next(line for line in lines if line.startswith("| ours-smoke-s0 |"))
    assert bicubic.endswith("| 0.000 dB |") and ours.endswith("| 0.250 dB |")
    assert f"{reference['x2']['psnr']:.2f} / {reference['x2']['ssim']:.4f}" in bicubic
    assert main(["scores", "--zoo", str(tmp_path), "nothing-s9"]) == 2
    assert "not in the zoo: nothing-s9; it holds: ours-smoke-s0" in capsys.readouterr().err
    # no name: the default for the device, here the CPU's (the overall one is not even present)
    update_manifest(lambda m: m.update(default="nothing-gpu-s0", default_cpu="ours-smoke-s0"), tmp_path)
    assert main(["scores", "--zoo", str(tmp_path), "--cache", str(tmp_path / "cache")]) == 0
    assert "| ours-smoke-s0 |" in capsys.readouterr().out
    # --record: the measured scores replace the stored ones, with the digest of the photos
    assert main(["scores", "--zoo", str(tmp_path), "--all", "--record"]) == 0
    assert "recorded in" in capsys.readouterr().out
    manifest = read_manifest(tmp_path)
    entry = manifest["models"]["ours-smoke-s0"]
    assert entry["scores"]["x3"]["psnr"] == pytest.approx(stored["x3"]["psnr"] - 0.25)
    assert entry["val_digest"] == manifest["reference_val_digest"] == set_digest(config.data.val)
    assert main(["scores", "--zoo", str(tmp_path), "--all"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert next(line for line in lines if line.startswith("| ours-smoke-s0 |")).endswith("| 0.000 dB |")


def test_default_model_follows_the_device_and_model_picks_any_zoo_model(images, tmp_path, capsys):
    """On a CPU the shipped zoo's default is its best CPU-sized "ours"; ``--model`` takes any
    zoo model by name (here the paper-size one, which loads and runs on a CPU too)."""
    from asbsr.lab.zoo import default_name, read_manifest

    manifest = read_manifest()
    out = tmp_path / "out.png"
    assert main(["upscale", str(images / "rgb.png"), str(out), "--scale", "2", "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    cpu_name = default_name("cpu")
    assert manifest["models"][cpu_name]["preset"] == "cpu"
    assert f"with {manifest['models'][cpu_name]['file']} on cpu" in captured.out
    if cpu_name != default_name("cuda"):  # a better paper-size model exists: the note says so
        assert f"--model {default_name('cuda')}" in captured.err
        assert main(["upscale", str(images / "rgb.png"), str(out), "--scale", "1.5", "--device", "cpu",
                     "--model", default_name("cuda")]) == 0
        captured = capsys.readouterr()
        assert f"with {manifest['models'][default_name('cuda')]['file']} on cpu" in captured.out
        assert "note:" not in captured.err and Image.open(out).size == (36, 30)
    line = refused(["upscale", images / "rgb.png", tmp_path / "other.png", "--scale", "2",
                    "--model", "nothing-s9"], capsys, tmp_path / "other.png")
    assert "no model 'nothing-s9' in the zoo; it holds: " in line and cpu_name in line
