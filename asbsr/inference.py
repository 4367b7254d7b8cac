"""Whole-image arbitrary-scale inference: output grids, cell clipping, chunked queries and tiled
encoding, for any head with the ``encode`` / ``query`` API.

``upscale(model, lr, scale=3.6, rep=r)`` asks the SR module for every pixel centre of the
``round(h * s) x round(w * s)`` output. Two knobs bound the memory:

* ``chunk``: output pixels per ``query`` call (the head's activations grow with it).
* ``tile``: encode the LR image in tiles of ``tile x tile`` LR pixels, each with ``halo`` pixels of
  context on every side, and stitch the cropped feature maps. Every convolution of the encoder is
  3x3 with zero padding, so a feature pixel depends on the LR pixels within ``receptive_radius``
  of it; with ``halo >= receptive_radius`` a tile's centre equals the untiled encoding, and a tile
  touching the image border sees the same zero padding there as the whole image does.

Given a ``BlindSR`` (E + SR module), ``upscale`` runs E (and, for the DCLS-style baselines, the
LR-space deconvolution) once on the whole image through ``BlindSR.prepare`` and then the SR
module; given a bare SR module, the caller passes ``rep = E(lr)``. The modulation is global (one
representation per image), so every tile uses the same ``rep`` and tiling stays exact. The cell
clipping beyond the training scales, ``clipped_cell``, and the chunked query loop,
``query_chunks``, live here only; ``asbsr.tiling`` builds on them.
"""

from __future__ import annotations

import numbers
from typing import Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from asbsr.degradation import check_scale
from asbsr.memory import keep_freed_memory
from asbsr.models.coords import make_coord


def output_size(lr_size: Sequence[int], scale=None, size=None) -> tuple[int, int]:
    """The ``(H, W)`` of the output: ``(round(h * scale), round(w * scale))`` (Python's ``round``,
    half to even), or ``size`` itself. Exactly one of ``scale`` / ``size``; ValueError otherwise."""
    if (scale is None) == (size is None):
        raise ValueError("give exactly one of scale or size")
    h, w = lr_size
    if scale is not None:
        scale = check_scale(scale)
        out = (round(h * scale), round(w * scale))
        if min(out) < 1:
            raise ValueError(f"scale {scale} makes an empty output from a {h}x{w} input")
        return out
    if (not isinstance(size, (tuple, list)) or len(size) != 2
            or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1 for v in size)):
        raise ValueError(f"size must be two positive integers (H, W), got {size!r}")
    return int(size[0]), int(size[1])


def clipped_cell(out_size: Sequence[int], lr_size: Sequence[int],
                 training_max_scale: float | None) -> tuple[float, float]:
    """The cell ``(2 / H, 2 / W)`` of an ``H x W`` output of an ``h x w`` input, clipped for
    scales beyond training (LTE's test-time rule): per axis, with the effective scale
    ``s = H / h``, ``2 / H * max(s / s_max, 1)``, i.e. never smaller than the cell of an ``s_max``
    upscaling. ``training_max_scale=None`` disables the clipping."""
    (H, W), (h, w) = out_size, lr_size
    if training_max_scale is None:
        return 2.0 / H, 2.0 / W
    if not training_max_scale > 0:
        raise ValueError(f"training_max_scale must be > 0, got {training_max_scale!r}")
    return (2.0 / H * max((H / h) / training_max_scale, 1.0),
            2.0 / W * max((W / w) / training_max_scale, 1.0))


def grid_queries(out_size: Sequence[int], lr_size: Sequence[int], training_max_scale: float | None,
                 device=None, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Queries for every pixel of an ``H x W`` output of an ``h x w`` input.

    Returns ``coord (H*W, 2)``, the pixel centres ``-1 + (2i + 1) / H`` (row-major), and
    ``cell (H*W, 2)``, ``clipped_cell`` of the sizes (``training_max_scale=None``: no clipping).
    With ``out_size == lr_size`` these are the scale-1 queries of the LR grid itself (the cycle
    of Section 3.4).
    """
    H, W = out_size
    coord = make_coord(H, W, device=device, dtype=dtype)
    cell = torch.tensor(clipped_cell(out_size, lr_size, training_max_scale), device=device, dtype=dtype)
    return coord, cell.expand(H * W, 2).clone()


def query_chunks(head: nn.Module, features: dict, coord: torch.Tensor, cell: torch.Tensor,
                 chunk: int, out: torch.Tensor, progress: bool = False) -> torch.Tensor:
    """``head.query`` of ``coord`` / ``cell`` ``(Q, 2)``, shared by the batch, ``chunk`` queries
    at a time, written into ``out`` ``(B, Q, 3)`` (in its dtype); returns ``out``."""
    batch, queries = out.shape[0], coord.shape[0]
    starts = range(0, queries, chunk)
    for start in tqdm(starts, desc="upscale", unit="chunk", disable=not progress):
        stop = min(start + chunk, queries)
        pred = head.query(features, coord[None, start:stop].expand(batch, -1, -1),
                          cell[None, start:stop].expand(batch, -1, -1))
        out[:, start:stop] = pred.to(out.dtype)
    return out


def model_max_scale(model: nn.Module, training_max_scale: float | None = None) -> float | None:
    """The largest training scale for the cell clipping: ``training_max_scale`` if given, else
    the model's own ``max_scale`` (a ``BlindSR`` has it from its config), else ``None`` (no
    clipping, for a bare head without one)."""
    if training_max_scale is not None:
        return training_max_scale
    return getattr(model, "max_scale", None)


def required_halo(model: nn.Module) -> int:
    """LR pixels of context a tile needs on each side: the model's ``receptive_radius``
    (for LTE ``2 * n_resblocks + 3``: head conv 1, two per block, tail conv 1, coef/freq conv 1).

    A head whose encoding depends on the whole image (SRNO's attention) declares
    ``receptive_radius = None`` and cannot be tiled: ValueError, as for a model without the
    attribute."""
    radius = getattr(model, "receptive_radius", None)
    if radius is None:
        raise ValueError(f"{type(model).__name__} declares no finite receptive_radius, so tiled "
                         "encoding cannot equal the untiled one; use tile=0")
    return int(radius)


def encode_tiled(model: nn.Module, lr: torch.Tensor, rep: torch.Tensor | None, tile: int,
                 halo: int | None = None, encode=None) -> dict[str, torch.Tensor]:
    """``model.encode(lr, rep)`` computed tile by tile: the same dict of ``(B, C_k, h, w)`` maps.
    (``encode``: another encoding function of the model's, e.g. ``BlindSR.encode_prepared``.)

    ``lr``: ``(B, 3, h, w)``; each ``tile x tile`` block (smaller at the right and bottom edges)
    is encoded with ``halo`` extra LR pixels on each side (clipped at the image border), and the
    halo is cropped from every returned map before stitching. ``halo=None`` uses
    ``required_halo(model)``, for which the result equals the untiled encoding up to float
    rounding; a model without the attribute needs an explicit ``halo``, and one that declares
    ``receptive_radius = None`` cannot be tiled (ValueError). The same global ``rep`` is used for
    every tile.
    """
    positive_int("tile", tile)
    if halo is None or (hasattr(model, "receptive_radius") and model.receptive_radius is None):
        halo = required_halo(model)  # raises for a whole-image encoding, whatever the halo
    halo = int(halo)
    if halo < 0:
        raise ValueError(f"halo must be >= 0, got {halo}")
    height, width = lr.shape[-2:]
    stitched: dict[str, torch.Tensor] = {}
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            bottom, right = min(top + tile, height), min(left + tile, width)
            y0, x0 = max(top - halo, 0), max(left - halo, 0)
            y1, x1 = min(bottom + halo, height), min(right + halo, width)
            maps = (encode or model.encode)(lr[..., y0:y1, x0:x1], rep)
            for key, fmap in maps.items():
                if fmap.shape[-2:] != (y1 - y0, x1 - x0):
                    raise ValueError(f"encode's {key!r} is not at LR resolution; cannot tile it")
                if key not in stitched:
                    layout = torch.channels_last if fmap.dim() == 4 and fmap.is_contiguous(
                        memory_format=torch.channels_last) else torch.contiguous_format  # as encode made it
                    stitched[key] = torch.empty(*fmap.shape[:-2], height, width, dtype=fmap.dtype,
                                                device=fmap.device, memory_format=layout)
                stitched[key][..., top:bottom, left:right] = \
                    fmap[..., top - y0:bottom - y0, left - x0:right - x0]
    return stitched


def positive_int(name: str, value) -> int:
    """``value`` as an int if it is a positive integer (not a bool), else ``ValueError`` naming it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def upscale(model: nn.Module, lr: torch.Tensor, scale=None, size=None,
            rep: torch.Tensor | None = None, chunk: int = 65536, tile: int = 0,
            training_max_scale: float | None = None, progress: bool = False,
            halo: int | None = None) -> torch.Tensor:
    """Super-resolve ``lr`` ``(B, 3, h, w)`` in [0, 1] to ``(B, 3, H, W)`` clamped to [0, 1].

    Args:
        model: a ``BlindSR`` (E runs here, on the whole image, through ``model.prepare``) or a
            bare SR module with the ``encode`` / ``query`` API (then pass ``rep``).
        scale: upscaling factor (finite, > 0; non-integer allowed): ``H, W = round(h*s), round(w*s)``.
        size: or the output size ``(H, W)`` directly. Exactly one of the two.
        rep: E's representation ``(B, dim)``, for a bare modulated SR module.
        chunk: output pixels per query call.
        tile: if > 0, encode in LR tiles of this side (``encode_tiled``, with ``halo``).
        training_max_scale: the largest training scale, for the cell clipping of ``grid_queries``;
            ``None``: the model's own (``model_max_scale``).
        progress: show a tqdm bar over the query chunks.
        halo: LR context per tile side; ``None`` uses ``required_halo(model)`` (exact).

    Runs under ``torch.no_grad``; does not change ``model.training`` (call ``model.eval()``
    first if the head has mode-dependent layers). On a CPU it applies
    ``asbsr.memory.keep_freed_memory()`` to the process.
    """
    if lr.dim() != 4 or lr.shape[1] != 3:
        raise ValueError(f"lr must be (B, 3, h, w), got shape {tuple(lr.shape)}")
    chunk = positive_int("chunk", chunk)
    if isinstance(tile, bool) or not isinstance(tile, numbers.Integral) or tile < 0:
        raise ValueError(f"tile must be an integer >= 0, got {tile!r}")
    if lr.device.type == "cpu":
        keep_freed_memory()
    max_scale = model_max_scale(model, training_max_scale)
    encode = model.encode
    if hasattr(model, "prepare"):  # a BlindSR: E (and the deconvolution) on the whole image once
        lr, rep = model.prepare(lr, rep)
        encode = model.encode_prepared
    if getattr(model, "modulated", False) and rep is None:
        raise ValueError("the model is modulated: pass rep = E(lr), the degradation representation")
    batch, _, h, w = lr.shape
    H, W = output_size((h, w), scale, size)
    # fp32 coordinates (fp64 for an fp64 input): fp16 cannot resolve the pixel centres of a
    # large output.
    dtype = torch.float64 if lr.dtype == torch.float64 else torch.float32
    coord, cell = grid_queries((H, W), (h, w), max_scale, device=lr.device, dtype=dtype)
    # no_grad rather than inference_mode: the result is then an ordinary tensor that callers may
    # modify in place or feed to a later autograd computation.
    with torch.no_grad():
        features = encode_tiled(model, lr, rep, tile, halo, encode) if tile else encode(lr, rep)
        out = query_chunks(model, features, coord, cell, chunk, lr.new_empty(batch, H * W, 3), progress)
    return out.view(batch, H, W, 3).permute(0, 3, 1, 2).clamp(0, 1).contiguous()
