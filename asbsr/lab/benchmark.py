"""The unknown-degradation benchmark of Section 4 (Tables 1 and 2).

Protocol, stated once:

* Each test image gets its **own** random degradation, drawn once from the training procedure
  (odd kernel size 7-21, lambda_1, lambda_2 ~ U(0.2, 4) as standard deviations, theta ~ U(0, pi),
  downsampler bicubic/bilinear/area) by a generator seeded with ``(seed, set, image name,
  draw)``, so the same image keeps the same kernel at every scale and nothing depends on the
  order of the files.
* The HR image is first cropped to a whole number of LR pixels (``metrics.crop_hr_to_lr_grid``);
  the LR image ``y = (x (*) k_h) down_s`` is clamped to [0, 1] and **quantised to 8 bits**, as a
  stored benchmark LR image would be, and written as PNG with a ``manifest.json`` (per image:
  kernel parameters, downsampler, scale, seed). Regenerating from the seed gives bit-identical
  LR images.
* Every method outputs exactly the HR size. PSNR and SSIM on the BT.601 Y channel of the
  uint8-quantised output, shaving ``ceil(scale)`` pixels per border (``asbsr.metrics``).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from asbsr.config import DegradationConfig
from asbsr.data import load_image, load_set, save_image, set_digest
from asbsr.degradation import Degradation, degrade, lr_size, resize
from asbsr.files import atomic_write_text
from asbsr.inference import upscale
from asbsr.metrics import crop_hr_to_lr_grid, psnr_y, shave_for, ssim_y
from asbsr.sampling import sample_degradation


@dataclass
class Sample:
    """One benchmark image: ``hr (3, H, W)`` cropped to the LR grid, ``lr (3, h, w)`` (8-bit
    values in [0, 1]) and the degradation that made it."""

    name: str
    hr: torch.Tensor
    lr: torch.Tensor
    degradation: Degradation


def image_seed(seed: int, set_name: str, image_name: str, draw: int = 0) -> int:
    """A stable 63-bit seed per (benchmark seed, set, image, draw)."""
    digest = hashlib.sha256(f"{seed}/{set_name}/{image_name}/{draw}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def degrade_once(hr: torch.Tensor, degradation: Degradation) -> tuple[torch.Tensor, torch.Tensor]:
    """``(hr cropped to the LR grid, 8-bit LR)`` for one image ``(3, H, W)``."""
    hr = crop_hr_to_lr_grid(hr, degradation.scale)
    lr = degrade(hr[None], degradation.kernel(), degradation.scale, degradation.mode)[0]
    return hr, torch.round(lr.clamp(0, 1) * 255) / 255


def _set_label(set_name: str) -> str:
    return Path(set_name).name if os.path.sep in str(set_name) else str(set_name)


def cache_folder(cache_dir: str | Path, set_name: str, scale: float, seed: int,
                 cfg: DegradationConfig, draws: int = 1, max_side: int | None = None) -> Path:
    """Where ``degraded_set`` keeps the LR images and ``manifest.json`` of one benchmark set.

    Everything that changes the LR images is in the name (a hash covers the degradation
    procedure, the image size and the set's photos, ``data.set_digest``), so a cache made
    otherwise -- with other settings, or before a photo was added, removed or changed -- is
    never reused.
    """
    procedure = hashlib.sha256(json.dumps([dataclasses.asdict(cfg), max_side, set_digest(set_name)],
                                          sort_keys=True, default=list).encode()).hexdigest()[:8]
    return Path(cache_dir) / f"{_set_label(set_name)}-x{scale:g}-seed{seed}-d{draws}-{procedure}"


def degraded_set(set_name: str, scale: float, seed: int, cfg: DegradationConfig,
                 cache_dir: str | Path | None = None, draws: int = 1,
                 max_side: int | None = None) -> list[Sample]:
    """The benchmark samples of ``set_name`` (a named set or folder) at ``scale``.

    ``draws > 1`` gives each image several independent degradations (Table 2 needs many
    samples). With ``cache_dir`` the LR images and the manifest are stored under
    ``cache_dir/<set>-x<scale>-seed<seed>-d<draws>/`` and reused when present.
    """
    images = load_set(set_name, max_side=max_side)
    label = _set_label(set_name)
    folder = cache_folder(cache_dir, set_name, scale, seed, cfg, draws, max_side) if cache_dir else None
    manifest_path = folder / "manifest.json" if folder else None
    if manifest_path is not None and manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        by_name = dict(images)
        samples = []
        for entry in manifest["images"]:
            degradation = Degradation.from_dict(entry["degradation"])
            hr = crop_hr_to_lr_grid(by_name[entry["image"]], degradation.scale)
            lr = load_image(folder / entry["lr_file"])
            if tuple(lr.shape[-2:]) != lr_size(tuple(hr.shape[-2:]), degradation.scale):
                raise ValueError(f"cached LR {folder / entry['lr_file']} does not match its HR image; "
                                 f"delete {folder} to regenerate it")
            samples.append(Sample(entry["name"], hr, lr, degradation))
        return samples
    samples, entries = [], []
    for name, hr in images:
        for draw in range(draws):
            generator = torch.Generator().manual_seed(image_seed(seed, label, name, draw))
            degradation = sample_degradation(generator, cfg, scale=scale)
            hr_crop, lr = degrade_once(hr, degradation)
            sample_name = name if draws == 1 else f"{name}#{draw}"
            samples.append(Sample(sample_name, hr_crop, lr, degradation))
            entries.append({"name": sample_name, "image": name, "draw": draw,
                            "lr_file": f"{sample_name.replace('#', '_d')}.png",
                            "seed": image_seed(seed, label, name, draw),
                            "degradation": degradation.to_dict()})
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        for sample, entry in zip(samples, entries):
            save_image(sample.lr, folder / entry["lr_file"])
        atomic_write_text(manifest_path, json.dumps({"set": label, "scale": scale, "seed": seed,
                                                     "draws": draws, "images": entries}, indent=2))
    return samples


Upscaler = Callable[[torch.Tensor, tuple[int, int]], torch.Tensor]


def bicubic_upscaler(lr: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The naive baseline: bicubic interpolation of ``lr (1, 3, h, w)`` to ``size``."""
    return resize(lr, size, "bicubic").clamp(0, 1)


def model_upscaler(model, chunk: int = 65536) -> Upscaler:
    """Wrap a ``BlindSR`` as ``(lr, size) -> sr`` (``asbsr.inference.upscale``, the cell clipped
    beyond the model's own training scales)."""
    def run(lr: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        device = next(model.parameters()).device
        return upscale(model, lr.to(device), size=size, chunk=chunk).cpu()
    return run


def evaluate(upscaler: Upscaler, samples: Sequence[Sample]) -> list[dict]:
    """Per-sample PSNR / SSIM (Y channel, shave ``ceil(scale)``)."""
    rows = []
    for sample in samples:
        size = tuple(sample.hr.shape[-2:])
        sr = upscaler(sample.lr[None], size)[0]
        shave = shave_for(sample.degradation.scale)
        rows.append({"image": sample.name, "scale": sample.degradation.scale,
                     "psnr": psnr_y(sr, sample.hr, shave), "ssim": ssim_y(sr, sample.hr, shave)})
    return rows


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    array = np.asarray(values, dtype=float)
    return float(array.mean()), float(array.std(ddof=1)) if array.size > 1 else 0.0


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> dict:
    """Mean of ``a - b`` over paired samples with a Student-t confidence interval.

    ``resolved`` says whether the interval excludes 0, i.e. whether the data separate the two.
    """
    from scipy import stats

    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    mean = float(diff.mean())
    if diff.size < 2:
        return {"mean": mean, "low": math.nan, "high": math.nan, "n": int(diff.size), "resolved": False}
    half = float(stats.t.ppf(0.5 + confidence / 2, diff.size - 1) * diff.std(ddof=1) / math.sqrt(diff.size))
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": int(diff.size),
            "resolved": bool(mean - half > 0 or mean + half < 0)}


def rank_marks(values: Sequence[float]) -> list[str]:
    """``"best"``, ``"second"`` or ``""`` per value (higher is better; ties share a rank)."""
    finite = sorted({v for v in values if math.isfinite(v)}, reverse=True)
    best = finite[0] if finite else None
    second = finite[1] if len(finite) > 1 else None
    return ["best" if v == best else "second" if v == second else "" for v in values]


def format_table(rows: list[dict], columns: list[str], row_key: str = "method",
                 digits: dict | None = None) -> str:
    """A Markdown table of ``rows`` with the best value of each column in **bold** and the second
    best _underlined_ (italic in plain Markdown). Cells may be numbers or ``(mean, std)``."""
    digits = digits or {}

    def value(cell):
        return cell[0] if isinstance(cell, (tuple, list)) else cell

    def text(cell, places):
        if isinstance(cell, (tuple, list)):
            return f"{cell[0]:.{places}f} ± {cell[1]:.{places}f}"
        return f"{cell:.{places}f}" if isinstance(cell, float) else str(cell)

    marks = {c: rank_marks([value(r[c]) for r in rows]) for c in columns}
    lines = ["| " + " | ".join([row_key] + columns) + " |",
             "|" + "---|" * (len(columns) + 1)]
    for i, row in enumerate(rows):
        cells = [str(row[row_key])]
        for c in columns:
            places = digits.get(c, 4 if "ssim" in c.lower() else 2)
            cell = text(row[c], places)
            cells.append(f"**{cell}**" if marks[c][i] == "best" else f"_{cell}_" if marks[c][i] == "second" else cell)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_csv(rows: list[dict], path: str | Path) -> Path:
    """Write ``rows`` (dicts with the same keys; ``(mean, std)`` cells split in two columns)."""
    flat = []
    for row in rows:
        out = {}
        for key, cell in row.items():
            if isinstance(cell, (tuple, list)):
                out[f"{key}_mean"], out[f"{key}_std"] = cell
            else:
                out[key] = cell
        flat.append(out)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(flat[0]))
    writer.writeheader()
    writer.writerows(flat)
    return atomic_write_text(path, buffer.getvalue())
