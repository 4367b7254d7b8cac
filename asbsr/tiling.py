"""Output-tiled inference: memory that grows with the tile, not with the image.

``asbsr.inference.encode_tiled`` bounds the *encoder's* activations, but it still stitches the
full-size feature maps (``n_feats + 2 * width`` channels at LR size for LTE: 576 channels, about
28 GB for a 12-megapixel input at the paper's size) before a single pixel is queried.
``upscale_tiled`` never builds them. For each ``tile x tile`` block of the LR image it

1. crops the prepared LR image with ``context`` pixels on every side (clipped at the image
   border), ``context = required_halo(model) + margin``;
2. encodes the crop, ``model.encode_prepared(crop, rep)``: the centre of the crop, out to ``margin``
   pixels beyond the block, equals the untiled encoding (every encoder convolution is 3x3, so a
   feature pixel depends only on the LR pixels within ``receptive_radius`` of it);
3. queries every output pixel whose centre falls inside the block, in the crop's own frame, and
   writes the results into the output.

The queries of a block only read features near the block: the local ensemble's four neighbours
and LTE's bilinear skip lie within one LR pixel of the query, Meta-SR's 3x3 patch sits under the
output pixel's top-left corner, half a cell away. ``margin = 1 + ceil(cell / 2)`` LR pixels, at
least 2, keeps all of them inside the exact part of the crop.

**Changing frames.** An output pixel with centre ``u`` (in LR pixels, ``u = (coord + 1) / 2 * h``)
has the crop coordinate ``(u - y0) / (y1 - y0) * 2 - 1`` for a crop of rows ``[y0, y1)``, and its
cell, measured in crop units, is ``cell * h / (y1 - y0)``; the heads only ever use ``coord`` and
``cell`` through ``(coord - centre) * (h, w)`` and ``cell * (h, w)``, which are the same in both
frames. The crop coordinates are mapped (in float64) from the float32 coordinates that
``upscale`` queries, and where rounding would move a query across a feature-pixel border,
it is moved back by a few ulps, so that it reads the same nearest feature as the untiled pass
(queries exactly on a border occur at every scale ``p / q`` with even ``q``, e.g. x2.5).

One limit of this exactness: the heads' tie-breaking nudges (``ENSEMBLE_EPS`` of the local
ensemble, ``CORNER_EPS`` of Meta-SR) are ``1e-6`` in coordinate units, i.e. ``1e-6 * h / 2``
LR pixels -- larger in the whole image's frame than in a crop's. Output pixels on a regular grid
come no closer than ``1 / (2H)`` LR pixels to a border unless they lie on it, so the two passes
can only disagree when ``h * H > 1e6`` along an axis, at the rare pixels lying between the two
nudges' reach from a border.

E's global representation is a spatial mean, so it is computed block by block too
(``DegradationEncoder.forward_tiled``: the blocks' sums of E's last feature map, each block cut
with enough context and aligned to E's stride, equal the whole-image pass). The deconvolution of
the DCLS-style baselines still runs on the whole input. Heads whose encoding
depends on the whole image (SRNO's global attention, ``receptive_radius = None``) cannot be tiled
exactly: ValueError.
"""

from __future__ import annotations

import math
import numbers

import torch
from tqdm.auto import tqdm

from asbsr.inference import (
    clipped_cell, model_max_scale, output_size, positive_int, query_chunks, required_halo,
)
from asbsr.models.coords import make_coord, nearest_index

# How many ulps a crop coordinate may be moved to land in the same feature pixel as the
# whole-image query (one or two are needed in practice).
MAX_NUDGES = 64


def first_output_index(boundary: int, out_len: int, lr_len: int) -> int:
    """The first output pixel whose centre lies at or beyond LR position ``boundary``.

    Output pixel ``i`` of ``out_len`` has its centre at ``u = (i + 1/2) * lr_len / out_len`` LR
    pixels; ``u >= boundary`` is ``(2i + 1) lr_len >= 2 boundary out_len``, solved in integers so
    that consecutive blocks share no pixel and miss none.
    """
    numerator = 2 * boundary * out_len - lr_len
    return max(0, -(-numerator // (2 * lr_len)))


def crop_coordinates(global_coord: torch.Tensor, lr_len: int, start: int,
                     stop: int) -> torch.Tensor:
    """Map 1-D coordinates of the whole image's frame (``lr_len`` pixels) to the frame of the crop
    ``[start, stop)``, so that each lands in the same feature pixel as before.

    ``global_coord``: ``(n,)`` float32 (or float64) pixel centres as ``asbsr.inference.upscale`` queries
    them. Returns ``(n,)`` of the same dtype: the affine image ``(u - start) / (stop - start) * 2
    - 1`` of ``u = (coord + 1) / 2 * lr_len``, moved by a few ulps where rounding would otherwise
    put it in another feature pixel than the whole-image query (for queries inside the crop).
    """
    length = stop - start
    exact = ((global_coord.double() + 1) / 2 * lr_len - start) / length * 2 - 1
    local = exact.to(global_coord.dtype)
    dummy = torch.zeros_like(global_coord)
    wanted = nearest_index(torch.stack([global_coord, dummy], -1), lr_len, 1)[0] - start
    inside = (wanted >= 0) & (wanted < length)  # outside the crop there is nothing to match
    for _ in range(MAX_NUDGES):
        got = nearest_index(torch.stack([local, dummy], -1), length, 1)[0]
        wrong = (got != wanted) & inside
        if not wrong.any():
            return local
        towards = torch.where(got < wanted, torch.ones_like(local), -torch.ones_like(local))
        local = torch.where(wrong, torch.nextafter(local, towards * 2), local)
    raise RuntimeError("could not map a coordinate into the crop's frame (please report this)")


def upscale_tiled(model, lr: torch.Tensor, scale=None, size=None, tile: int = 256,
                  chunk: int = 65536, training_max_scale: float | None = None,
                  progress: bool = False, halo: int | None = None) -> torch.Tensor:
    """``asbsr.inference.upscale(model, lr, scale or size)``, computed block by block of the LR image.

    Args:
        model: a ``BlindSR`` (``prepare`` and an ``sr`` head with the ``encode`` / ``query`` API
            and a finite ``receptive_radius``).
        lr: ``(B, 3, h, w)`` in [0, 1].
        scale, size: the output, exactly one of them: ``(H, W) = (round(h s), round(w s))`` or
            ``size = (H, W)``.
        tile: side of the LR blocks (the last row and column of blocks may be smaller).
        chunk: output pixels per ``query`` call.
        training_max_scale: largest training scale, for LTE's cell clipping; ``None``: the
            model's own ``max_scale`` (as ``upscale``).
        progress: a tqdm bar over the blocks.
        halo: LR context per side of a block's crop; ``None`` uses
            ``required_halo(model) + margin`` (see the module docstring), for which the result
            equals ``upscale`` up to float rounding. Smaller values show seams.

    Returns ``(B, 3, H, W)`` clamped to [0, 1]. Memory: the LR image, its Haar bands and the
    output, plus one block's activations (E's, then the SR module's) and one chunk's. E runs
    block by block as well (``DegradationEncoder.forward_tiled``, exact); the DCLS-style
    baselines' Wiener deconvolution still runs on the whole image. Runs under ``torch.no_grad``.
    """
    if not (hasattr(model, "prepare") and hasattr(model, "encode_prepared")):
        raise TypeError("upscale_tiled needs a BlindSR (E + SR module), got "
                        f"{type(model).__name__}")
    if model.receptive_radius is None:
        raise ValueError(f"tiling is not exact for {type(model.sr).__name__}: its encoding depends "
                         "on the whole image (global attention); use asbsr.inference.upscale without tiles")
    if lr.dim() != 4 or lr.shape[1] != 3:
        raise ValueError(f"lr must be (B, 3, h, w), got shape {tuple(lr.shape)}")
    tile = positive_int("tile", tile)
    chunk = positive_int("chunk", chunk)
    batch, _, h, w = lr.shape
    H, W = output_size((h, w), scale, size)
    cell_y, cell_x = clipped_cell((H, W), (h, w), model_max_scale(model, training_max_scale))
    if halo is None:
        # Half a cell, in LR pixels, is how far Meta-SR's corner lies from the query's centre.
        reach = max(cell_y * h, cell_x * w) / 4
        halo = required_halo(model) + max(2, 1 + math.ceil(reach))
    elif isinstance(halo, bool) or not isinstance(halo, numbers.Integral) or halo < 0:
        raise ValueError(f"halo must be an integer >= 0, got {halo!r}")
    dtype = torch.float64 if lr.dtype == torch.float64 else torch.float32
    # The coordinates asbsr.inference.upscale queries, one axis at a time.
    rows_global = make_coord(H, 1, device=lr.device, dtype=dtype)[:, 0]
    cols_global = make_coord(1, W, device=lr.device, dtype=dtype)[:, 1]
    blocks = [(top, left) for top in range(0, h, tile) for left in range(0, w, tile)]
    with torch.no_grad():
        prepared, rep = model.prepare(lr, tile=tile)  # E block by block too
        out = lr.new_empty(batch, 3, H, W)
        for top, left in tqdm(blocks, desc="upscale", unit="tile", disable=not progress):
            bottom, right = min(top + tile, h), min(left + tile, w)
            r0, r1 = first_output_index(top, H, h), first_output_index(bottom, H, h)
            c0, c1 = first_output_index(left, W, w), first_output_index(right, W, w)
            if r0 == r1 or c0 == c1:  # a downscale can leave a block without output pixels
                continue
            y0, y1 = max(top - halo, 0), min(bottom + halo, h)
            x0, x1 = max(left - halo, 0), min(right + halo, w)
            features = model.encode_prepared(prepared[..., y0:y1, x0:x1], rep)
            ys = crop_coordinates(rows_global[r0:r1], h, y0, y1)
            xs = crop_coordinates(cols_global[c0:c1], w, x0, x1)
            coord = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1).reshape(-1, 2)
            cell = torch.tensor([cell_y * h / (y1 - y0), cell_x * w / (x1 - x0)],
                                device=lr.device, dtype=dtype).expand(coord.shape[0], 2)
            block = query_chunks(model, features, coord, cell, chunk,
                                 lr.new_empty(batch, coord.shape[0], 3))
            del features
            out[:, :, r0:r1, c0:c1] = block.view(batch, r1 - r0, c1 - c0, 3).permute(0, 3, 1, 2)
    return out.clamp_(0, 1)
