"""Images in and out: robust reading, atomic writing, the named image sets, random HR crops.

Every image tensor in asbsr is ``(3, H, W)`` float32 RGB in ``[0, 1]``. The paper trains on
DIV2K and tests on Set5/Set14/B100/Urban100; none of them may be downloaded at run time, so the
repository ships small stand-ins (see ``data/SOURCES.md``):

* ``"train"``    -- 37 CC0 / CC-BY / CC-BY-SA photographs, long side 640 (DIV2K's role).
* ``"val"``      -- 16 more such photographs, mostly from other packages than the training
  photos, held out (model selection, validation scores, Table 2).
* ``"classic5"`` -- barbara, kodim23, monarch, sail, tulips: classic lossless test images.
* ``"skimage"``  -- the colour photographs that scikit-image installs with itself.

Any folder of png / jpg / jpeg / bmp / tif / tiff / webp files works in place of a name.
PIL, numpy and scikit-image serve only for file I/O here; all arithmetic is torch.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from asbsr.files import atomic_path

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
FOLDER_SETS = ("train", "val", "classic5")
# Colour photographs that skimage.data reads from its own package folder (no pooch download).
SKIMAGE_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg")
NAMED_SETS = FOLDER_SETS + ("skimage",)


class ImageError(ValueError):
    """A file that cannot be read as an image; the message names the file."""


class LoadedImage(NamedTuple):
    """``image``: (3, H, W) float32 in [0, 1]; ``notes``: the conversions that were made."""

    image: torch.Tensor
    notes: tuple[str, ...]


def _decode(im: Image.Image, notes: list[str]) -> tuple[np.ndarray, float]:
    """Turn a PIL image of any mode into an (H, W, C) array and the value that means white."""
    mode = im.mode
    if mode in ("RGB", "RGBA", "L", "LA"):
        return np.asarray(im), 255.0
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in im.info
        notes.append("palette image converted to RGB")
        return np.asarray(im.convert("RGBA" if has_alpha else "RGB")), 255.0
    if mode == "1":
        notes.append("bilevel (1-bit) image converted to grayscale")
        return np.asarray(im.convert("L")), 255.0
    if mode.startswith("I;16") or mode == "I":
        # Both hold 16-bit samples in practice (PNG, TIFF); mode I is 32-bit storage of them.
        notes.append("16-bit image scaled to [0, 1] (divided by 65535)")
        return np.asarray(im).astype(np.float32), 65535.0
    if mode == "F":
        notes.append("floating-point image read as intensities in [0, 1]")
        return np.asarray(im, dtype=np.float32), 1.0
    if mode == "CMYK":
        notes.append("CMYK converted to RGB (naive, colour profile ignored)")
    else:
        notes.append(f"mode {mode} converted to RGB")
    return np.asarray(im.convert("RGB")), 255.0


def _bits_per_sample(path: Path, im: Image.Image) -> int:
    """Bits per colour sample as the file stores them (PNG's IHDR, TIFF's BitsPerSample), 8 when
    the format does not say: Pillow opens a 16-bit RGB file as 8-bit RGB without a word."""
    if im.format == "PNG":
        with open(path, "rb") as handle:
            header = handle.read(26)
        return header[24] if len(header) == 26 and header[12:16] == b"IHDR" else 8
    if im.format == "TIFF":
        bits = getattr(im, "tag_v2", {}).get(258, 8)
        return max(bits) if isinstance(bits, tuple) else int(bits)
    return 8


def check_image_file(path: str | os.PathLike) -> Path:
    """``path`` if it is a non-empty file, else ``ImageError`` saying what it is instead."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: empty file (0 bytes)")
    return path


def read_image(path: str | os.PathLike) -> LoadedImage:
    """Read any still image PIL understands as ``LoadedImage(image (3, H, W) float32 in [0, 1], notes)``.

    EXIF orientation is applied; grayscale is repeated to RGB; alpha is composited on white;
    16-bit samples are divided by 65535 (16-bit RGB PNGs arrive as 8-bit: PIL has no 48-bit
    mode). Missing, empty, truncated or non-image files raise ``ImageError`` naming the file.
    """
    path = check_image_file(path)
    notes: list[str] = []
    try:
        with Image.open(path) as im:
            if getattr(im, "n_frames", 1) > 1:
                notes.append(f"first of {im.n_frames} frames used")
            if im.getexif().get(0x0112, 1) not in (1, None):
                notes.append("EXIF orientation applied")
            if _bits_per_sample(path, im) > 8 and im.mode in ("RGB", "RGBA"):
                notes.append("16-bit colour image read as 8-bit (Pillow has no 16-bit RGB mode): "
                             "the low 8 bits of each sample are lost")
            if im.info.get("icc_profile"):
                notes.append("colour profile (ICC) ignored: the pixel values are read as sRGB")
            im.load()  # decode here, so that truncated data fails inside this try
            im = ImageOps.exif_transpose(im)
            if im.width == 0 or im.height == 0:
                raise ImageError(f"{path}: image has zero size {im.width}x{im.height}")
            array, white = _decode(im, notes)
    except ImageError:
        raise
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, struct.error ...
        raise ImageError(f"{path}: cannot read as an image ({type(err).__name__}: {err})") from None
    x = torch.from_numpy(np.array(array, dtype=np.float32)) / white
    if x.ndim == 2:
        x = x[:, :, None]
    x = x.permute(2, 0, 1)  # (C, H, W)
    if not torch.isfinite(x).all():
        raise ImageError(f"{path}: image contains NaN or infinite values")
    if x.min() < 0 or x.max() > 1:
        notes.append("values outside [0, 1] clipped")
        x = x.clamp(0, 1)
    if x.shape[0] in (2, 4):  # LA or RGBA: the last channel is alpha
        alpha = x[-1:]
        notes.append("alpha channel dropped (fully opaque)" if bool((alpha == 1).all())
                     else "alpha channel dropped (composited on white)")
        x = x[:-1] * alpha + (1 - alpha)
    if x.shape[0] == 1:
        notes.append("grayscale converted to RGB")
        x = x.expand(3, -1, -1)
    return LoadedImage(x.contiguous(), tuple(notes))


def load_image(path: str | os.PathLike) -> torch.Tensor:
    """The image of ``read_image(path)``: (3, H, W) float32 in [0, 1]."""
    return read_image(path).image


SAVE_BAND_VALUES = 1 << 22  # values quantised at a time by save_image


def save_image(image: torch.Tensor, path: str | os.PathLike) -> Path:
    """Write ``image`` (3, H, W) or (1, 3, H, W) in [0, 1] as 8-bit RGB, atomically.

    Values are clamped to [0, 1] and rounded to the nearest of 256 levels. The format follows
    the suffix (.png, .jpg, ...). The write is atomic (``asbsr.files.atomic_path``): a failure
    never leaves a partial file, and an existing file at ``path`` stays intact until the new one
    is complete.
    """
    path = Path(path)
    if image.ndim == 4 and image.shape[0] == 1:
        image = image[0]
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"save_image expects (3, H, W) or (1, 3, H, W), got {tuple(image.shape)}")
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise ValueError(f"cannot save {path}: unknown image suffix {path.suffix!r}")
    # Quantised a band of rows at a time into one uint8 array: a whole-image float expression
    # would make several float copies of what may be a 48-megapixel output.
    height, width = image.shape[1:]
    array = np.empty((height, width, 3), dtype=np.uint8)
    rows = max(1, SAVE_BAND_VALUES // (3 * width))
    for top in range(0, height, rows):
        band = image[:, top:top + rows].detach().float()
        if torch.isnan(band).any():
            raise ValueError(f"refusing to save {path}: the image contains NaN")
        band = band.clamp(0, 1).mul_(255).round_().to(torch.uint8)
        array[top:top + rows] = band.permute(1, 2, 0).cpu().numpy()
    options = {"quality": 95} if fmt == "JPEG" else {}
    with atomic_path(path) as temporary:
        Image.fromarray(array).save(temporary, format=fmt, **options)
    return path


def image_paths(name_or_folder: str | os.PathLike) -> list[Path]:
    """The image files of a named set or a folder, sorted by name.

    A ``str`` equal to one of ``NAMED_SETS`` is that set; anything else must be a folder, whose
    non-hidden files with a suffix in ``IMAGE_SUFFIXES`` (any case) are returned.
    """
    if isinstance(name_or_folder, str) and name_or_folder == "skimage":
        import skimage.data  # only to find its folder; importing it downloads nothing

        folder = Path(skimage.data.data_dir)
        paths = [folder / name for name in SKIMAGE_PHOTOS]
        missing = [p.name for p in paths if not p.is_file()]
        if missing:
            raise ImageError(f"{folder}: scikit-image lacks {', '.join(missing)}")
        return paths
    if isinstance(name_or_folder, str) and name_or_folder in FOLDER_SETS:
        folder = DATA_DIR / name_or_folder
    else:
        folder = Path(name_or_folder)
        if not folder.is_dir():
            raise ValueError(f"{str(name_or_folder)!r} is neither a named set "
                             f"({', '.join(NAMED_SETS)}) nor a folder")
    paths = sorted(p for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    if not paths:
        raise ValueError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    return paths


def shrink_to(image: torch.Tensor, max_side: int) -> torch.Tensor:
    """Downscale (3, H, W) so that max(H, W) <= max_side, keeping the aspect ratio.

    Antialiased bicubic (``F.interpolate(..., antialias=True)``, equal to PIL's bicubic), clamped
    to [0, 1]; an image already small enough is returned unchanged.
    """
    if isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < 1:
        raise ValueError(f"max_side must be a positive int, got {max_side!r}")
    height, width = image.shape[-2:]
    if max(height, width) <= max_side:
        return image
    factor = max_side / max(height, width)
    size = (max(1, round(height * factor)), max(1, round(width * factor)))
    small = F.interpolate(image[None], size=size, mode="bicubic", antialias=True, align_corners=False)
    return small[0].clamp(0, 1)


_DIGESTS: dict[tuple, str] = {}


def set_digest(name_or_folder: str | os.PathLike) -> str:
    """A short SHA-256 over the file names and bytes of a set's images (``image_paths``).

    Checkpoint keys include it (``checkpoint.stage_key``), so that a model trained on other
    photos -- a file added, removed or changed -- is never loaded as if it matched. Cached by
    path, size and modification time, so repeated keys do not re-read the files.
    """
    paths = image_paths(name_or_folder)
    stamp = tuple((str(p), stat.st_size, stat.st_mtime_ns) for p in paths for stat in [p.stat()])
    if stamp not in _DIGESTS:
        total = hashlib.sha256()
        for path in paths:
            total.update(f"{path.name}\0{hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
        _DIGESTS[stamp] = total.hexdigest()[:16]
    return _DIGESTS[stamp]


def load_set(name_or_folder: str | os.PathLike,
             max_side: int | None = None) -> list[tuple[str, torch.Tensor]]:
    """``[(file stem, image (3, H, W) float32 in [0, 1]), ...]`` for a named set or a folder.

    ``max_side`` downscales larger images (see ``shrink_to``) so that a CPU can handle them.
    """
    images = []
    for path in image_paths(name_or_folder):
        image = load_image(path)
        images.append((path.stem, image if max_side is None else shrink_to(image, max_side)))
    return images


def random_crop(image: torch.Tensor, size: int | Sequence[int],
                generator: torch.Generator | None = None) -> torch.Tensor:
    """A uniformly placed crop of ``image`` (C, H, W): (C, size, size), or (C, h, w) for ``size=(h, w)``.

    The corner is drawn with ``generator`` (the same seed gives the same crop). The result is a
    view of ``image``. An image smaller than the crop raises ``ValueError``.
    """
    if image.ndim != 3:
        raise ValueError(f"random_crop expects (C, H, W), got {tuple(image.shape)}")
    crop_h, crop_w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    height, width = image.shape[-2:]
    if crop_h < 1 or crop_w < 1:
        raise ValueError(f"crop size must be positive, got {crop_h}x{crop_w}")
    if crop_h > height or crop_w > width:
        raise ValueError(f"cannot crop {crop_h}x{crop_w} from an image of {height}x{width}")
    device = generator.device if generator is not None else "cpu"
    top = int(torch.randint(height - crop_h + 1, (1,), generator=generator, device=device))
    left = int(torch.randint(width - crop_w + 1, (1,), generator=generator, device=device))
    return image[:, top:top + crop_h, left:left + crop_w]
