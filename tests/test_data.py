"""asbsr.data: named sets, robust reading of odd files, atomic saving, random crops."""

from __future__ import annotations

import hashlib
import io
import os

import numpy as np
import pytest
import torch
from PIL import Image

from asbsr import data
from asbsr.data import DATA_DIR, FOLDER_SETS, ImageError, image_paths, load_image, load_set, random_crop, read_image, save_image


def rgb_u8(height=6, width=9, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def as_hwc(x: torch.Tensor) -> np.ndarray:
    return x.permute(1, 2, 0).numpy()


# ---------------------------------------------------------------- named sets and folders

@pytest.mark.parametrize("name, count", [("train", 37), ("val", 20), ("classic5", 5), ("skimage", 5)])
def test_named_sets_are_rgb_in_unit_range(name, count):
    images = load_set(name)
    assert len(images) == count
    assert len({stem for stem, _ in images}) == count
    for stem, x in images:
        assert x.dtype == torch.float32 and x.ndim == 3 and x.shape[0] == 3, stem
        assert 0 <= x.min() and x.max() <= 1, stem
        assert min(x.shape[1:]) >= 256, stem  # big enough for HR crops of 48 x 4
        assert x.std() > 0.05, stem  # a photograph, not a flat or broken file
    if name in ("train", "val"):  # downscaled to 640; val's four scikit-image photos kept as they are
        kept = ("astronaut", "chelsea", "coffee", "rocket") if name == "val" else ()
        assert all(max(x.shape[1:]) == 640 for stem, x in images if stem not in kept)
        assert all(451 <= max(x.shape[1:]) <= 640 for stem, x in images if stem in kept)


def test_every_shipped_image_is_the_file_its_sources_describe():
    """data/SHA256SUMS (checked by data/prepare_data.py when it rebuilds them) lists exactly the
    committed images, each with its current digest."""
    listed = {}
    for line in (DATA_DIR / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ", 1)
        listed[name] = digest
    present = {p.relative_to(DATA_DIR).as_posix(): p for folder in FOLDER_SETS
               for p in (DATA_DIR / folder).iterdir() if p.suffix == ".png"}
    assert set(listed) == set(present)
    for name, path in present.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == listed[name], name


def test_train_and_val_do_not_overlap():
    train = {p.name for p in image_paths("train")}
    val = {p.name for p in image_paths("val")}
    assert train and val and not train & val


def test_skimage_set_equals_skimage_data():
    skdata = pytest.importorskip("skimage.data")
    for stem, x in load_set("skimage"):
        expected = skdata.stereo_motorcycle()[0] if stem == "motorcycle_left" else getattr(skdata, stem)()
        np.testing.assert_array_equal(np.round(as_hwc(x) * 255).astype(np.uint8), expected)


def test_classic5_is_the_untouched_lossless_files():
    for path in image_paths("classic5"):
        with Image.open(path) as im:
            assert im.format == "PNG" and im.mode == "RGB"
            np.testing.assert_array_equal(np.round(as_hwc(load_image(path)) * 255), np.asarray(im))


def test_every_committed_image_is_listed_in_sources():
    sources = (data.DATA_DIR / "SOURCES.md").read_text(encoding="utf-8")
    files = [p for p in data.DATA_DIR.rglob("*") if p.suffix.lower() in data.IMAGE_SUFFIXES]
    assert len(files) == 62
    for path in files:
        assert path.relative_to(data.DATA_DIR).as_posix() in sources, path


def test_folder_loader_filters_and_sorts(tmp_path):
    Image.fromarray(rgb_u8(seed=1)).save(tmp_path / "b.png")
    Image.fromarray(rgb_u8(seed=2)).save(tmp_path / "A.BMP")
    Image.fromarray(rgb_u8(seed=3)).save(tmp_path / ".hidden.png")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub.png").mkdir()
    assert [p.name for p in image_paths(tmp_path)] == ["A.BMP", "b.png"]
    loaded = load_set(str(tmp_path))
    assert [stem for stem, _ in loaded] == ["A", "b"]
    np.testing.assert_array_equal(np.round(as_hwc(loaded[1][1]) * 255), rgb_u8(seed=1))


def test_unknown_set_and_empty_folder(tmp_path):
    with pytest.raises(ValueError, match="train, val, classic5, skimage"):
        image_paths("div2k")
    with pytest.raises(ValueError, match="no image files"):
        image_paths(tmp_path)


def test_load_set_max_side_keeps_aspect_and_matches_pil_bicubic(tmp_path):
    pixels = rgb_u8(60, 90, seed=4)
    Image.fromarray(pixels).save(tmp_path / "x.png")
    (stem, small), = load_set(tmp_path, max_side=40)
    assert stem == "x" and small.shape == (3, 27, 40)
    # Oracle: PIL's (antialiased) bicubic on each float channel.
    for c in range(3):
        channel = Image.fromarray(pixels[:, :, c].astype(np.float32) / 255)
        expected = np.asarray(channel.resize((40, 27), Image.Resampling.BICUBIC)).clip(0, 1)
        np.testing.assert_allclose(small[c].numpy(), expected, atol=2e-3)
    (_, same), = load_set(tmp_path, max_side=200)  # never upscales
    assert same.shape == (3, 60, 90)
    with pytest.raises(ValueError, match="max_side"):
        load_set(tmp_path, max_side=0)


# ---------------------------------------------------------------- odd but valid files

def test_grayscale(tmp_path):
    gray = rgb_u8(seed=5)[:, :, 0]
    Image.fromarray(gray).save(tmp_path / "g.png")
    loaded = read_image(tmp_path / "g.png")
    assert loaded.notes == ("grayscale converted to RGB",)
    for c in range(3):
        np.testing.assert_array_equal(np.round(loaded.image[c].numpy() * 255), gray)


def test_rgba_is_composited_on_white(tmp_path):
    rgba = np.random.default_rng(6).integers(0, 256, (5, 8, 4), dtype=np.uint8)
    Image.fromarray(rgba).save(tmp_path / "a.png")
    loaded = read_image(tmp_path / "a.png")
    assert loaded.notes == ("alpha channel dropped (composited on white)",)
    alpha = rgba[:, :, 3:] / 255
    expected = rgba[:, :, :3] / 255 * alpha + (1 - alpha)
    np.testing.assert_allclose(as_hwc(loaded.image), expected, atol=1e-6)


def test_opaque_alpha_and_grayscale_alpha(tmp_path):
    rgba = rgb_u8(seed=7)
    Image.fromarray(np.dstack([rgba, np.full(rgba.shape[:2], 255, np.uint8)])).save(tmp_path / "o.png")
    opaque = read_image(tmp_path / "o.png")
    assert opaque.notes == ("alpha channel dropped (fully opaque)",)
    np.testing.assert_array_equal(np.round(as_hwc(opaque.image) * 255), rgba)
    Image.new("LA", (4, 3), (100, 0)).save(tmp_path / "la.png")  # fully transparent -> white
    la = read_image(tmp_path / "la.png")
    assert "grayscale converted to RGB" in la.notes and torch.equal(la.image, torch.ones(3, 3, 4))


@pytest.mark.parametrize("transparent", [False, True])
def test_palette(tmp_path, transparent):
    im = Image.new("P", (4, 3), 0)
    im.putpalette([200, 10, 20, 0, 255, 0] + [0] * 762)
    im.putpixel((1, 2), 1)
    im.save(tmp_path / "p.png", **({"transparency": 1} if transparent else {}))
    loaded = read_image(tmp_path / "p.png")
    assert loaded.notes[0] == "palette image converted to RGB"
    assert loaded.image[:, 0, 0].mul(255).round().tolist() == [200, 10, 20]
    expected = [255, 255, 255] if transparent else [0, 255, 0]
    assert loaded.image[:, 2, 1].mul(255).round().tolist() == expected
    assert ("alpha channel dropped (composited on white)" in loaded.notes) == transparent


def test_16bit_grayscale_keeps_full_precision(tmp_path):
    values = np.random.default_rng(8).integers(0, 65536, (5, 7)).astype(np.uint16)
    values[0, 0], values[0, 1] = 0, 65535
    Image.fromarray(values).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as im:
        assert im.mode.startswith("I")  # PIL's 16-bit modes: I;16 (or I on older Pillow)
    loaded = read_image(tmp_path / "g16.png")
    assert loaded.notes == ("16-bit image scaled to [0, 1] (divided by 65535)", "grayscale converted to RGB")
    np.testing.assert_allclose(loaded.image[1].double().numpy(), values / 65535, atol=1e-7)


def test_bilevel_float_and_cmyk(tmp_path):
    bits = np.zeros((3, 5), bool)
    bits[1, 2] = True
    Image.fromarray(bits).save(tmp_path / "b.png")
    loaded = read_image(tmp_path / "b.png")
    assert loaded.notes[0].startswith("bilevel") and torch.equal(loaded.image[0], torch.from_numpy(bits).float())

    floats = np.array([[0.25, 1.5], [-1.0, 0.75]], np.float32)
    Image.fromarray(floats).save(tmp_path / "f.tif")
    loaded = read_image(tmp_path / "f.tif")
    assert "values outside [0, 1] clipped" in loaded.notes
    assert loaded.image[2].tolist() == [[0.25, 1.0], [0.0, 0.75]]

    Image.new("CMYK", (3, 2), (0, 255, 0, 0)).save(tmp_path / "c.tif")  # pure magenta ink
    loaded = read_image(tmp_path / "c.tif")
    assert loaded.notes[0].startswith("CMYK") and loaded.image[:, 0, 0].tolist() == [1.0, 0.0, 1.0]


def test_exif_orientation_is_applied(tmp_path):
    pixels = rgb_u8(4, 6, seed=9)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(pixels).save(tmp_path / "r.png", exif=exif.tobytes())
    loaded = read_image(tmp_path / "r.png")
    assert loaded.notes == ("EXIF orientation applied",)
    np.testing.assert_array_equal(np.round(as_hwc(loaded.image) * 255), np.rot90(pixels, k=-1))


# ---------------------------------------------------------------- unreadable files

def unreadable_files(tmp_path):
    good = io.BytesIO()
    Image.fromarray(rgb_u8(64, 64, seed=10)).save(good, format="PNG")
    (tmp_path / "noise.png").write_bytes(np.random.default_rng(11).bytes(500))
    (tmp_path / "text.png").write_text("hello, I am not a picture\n")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "truncated.png").write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    jpeg = io.BytesIO()
    Image.fromarray(rgb_u8(64, 64, seed=10)).save(jpeg, format="JPEG")
    (tmp_path / "truncated.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    (tmp_path / "folder.png").mkdir()
    return ["noise.png", "text.png", "empty.png", "truncated.png", "truncated.jpg", "folder.png", "missing.png"]


def test_unreadable_files_raise_image_error_naming_the_file(tmp_path):
    for name in unreadable_files(tmp_path):
        with pytest.raises(ImageError, match=name) as info:
            load_image(tmp_path / name)
        assert isinstance(info.value, ValueError) and "\n" not in str(info.value)


# ---------------------------------------------------------------- saving

def test_save_round_trip_is_exact(tmp_path):
    pixels = rgb_u8(7, 11, seed=12)
    image = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255
    save_image(image, tmp_path / "x.png")
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "x.png")), pixels)
    save_image(image[None], tmp_path / "sub" / "y.png")  # (1, 3, H, W), folder created
    assert torch.equal(load_image(tmp_path / "sub" / "y.png"), image)
    assert sorted(os.listdir(tmp_path)) == ["sub", "x.png"]  # no temporary file left behind


def test_save_in_bands_of_rows_equals_one_pass(tmp_path, monkeypatch):
    import asbsr.data

    image = torch.rand(3, 23, 5, generator=torch.Generator().manual_seed(4)) * 1.2 - 0.1
    image_before = image.clone()
    save_image(image, tmp_path / "one.png")
    monkeypatch.setattr(asbsr.data, "SAVE_BAND_VALUES", 2 * 3 * 5)  # 2 rows at a time: 12 bands
    save_image(image, tmp_path / "bands.png")
    expected = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    for name in ("one.png", "bands.png"):
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / name)), expected)
    assert torch.equal(image, image_before)  # the caller's tensor is not modified
    image[:, 21, 3] = float("nan")  # in the last band: found before anything is written
    with pytest.raises(ValueError, match="NaN"):
        save_image(image, tmp_path / "nan.png")
    assert sorted(os.listdir(tmp_path)) == ["bands.png", "one.png"]


def test_save_clamps_and_rounds(tmp_path):
    image = torch.tensor([-0.5, 1.7, 0.4 / 255, 0.6 / 255, 127.5 / 255, 1.0]).reshape(1, 1, 6).repeat(3, 1, 1)
    save_image(image, tmp_path / "c.png")
    assert np.asarray(Image.open(tmp_path / "c.png"))[0, :, 0].tolist() == [0, 255, 0, 1, 128, 255]
    with pytest.raises(ValueError, match="NaN"):
        save_image(torch.full((3, 2, 2), float("nan")), tmp_path / "nan.png")
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        save_image(torch.zeros(1, 4, 4), tmp_path / "gray.png")


def test_save_failure_leaves_existing_file_untouched(tmp_path, monkeypatch):
    target = tmp_path / "keep.png"
    target.write_bytes(b"old contents")
    image = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0))

    with pytest.raises(ValueError, match="suffix"):
        save_image(image, tmp_path / "keep.nosuchformat")

    def write_half_then_fail(self, fp, *args, **kwargs):
        with open(fp, "wb") as handle:
            handle.write(b"\x89PNG partial")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(Image.Image, "save", write_half_then_fail)
    with pytest.raises(OSError, match="simulated"):
        save_image(image, target)
    assert target.read_bytes() == b"old contents"
    assert os.listdir(tmp_path) == ["keep.png"]


# ---------------------------------------------------------------- random crops

def test_random_crop_is_a_seeded_uniform_window():
    image = torch.arange(3 * 5 * 6, dtype=torch.float32).reshape(3, 5, 6)
    first = random_crop(image, 3, torch.Generator().manual_seed(7))
    again = random_crop(image, 3, torch.Generator().manual_seed(7))
    assert first.shape == (3, 3, 3) and torch.equal(first, again)
    corners = set()
    generator = torch.Generator().manual_seed(0)
    for _ in range(300):
        crop = random_crop(image, (2, 4), generator)
        top, left = divmod(int(crop[0, 0, 0]), 6)
        assert torch.equal(crop, image[:, top:top + 2, left:left + 4])
        corners.add((top, left))
    assert corners == {(t, l) for t in range(4) for l in range(3)}  # every position, edges included
    assert random_crop(image, (5, 6), generator).shape == (3, 5, 6)


def test_random_crop_rejects_too_small_images():
    with pytest.raises(ValueError, match="48x48 from an image of 40x100"):
        random_crop(torch.zeros(3, 40, 100), 48, torch.Generator())
    with pytest.raises(ValueError, match="C, H, W"):
        random_crop(torch.zeros(1, 3, 50, 50), 48, torch.Generator())
