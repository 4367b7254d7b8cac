"""Continuous image coordinates, cells and the local-ensemble neighbour lookup.

An image of ``h x w`` pixels is treated as a function on the square ``[-1, 1]^2``; pixel ``(i, j)``
is the cell centred at ``(-1 + (2i + 1) / h, -1 + (2j + 1) / w)`` (``align_corners=False``).
Coordinates are ``(y, x)`` pairs, as in LIIF and LTE. A query also carries its *cell*: the height
and width of the output pixel it stands for, ``(2 / H, 2 / W)`` for an ``H x W`` output.

Every arbitrary-scale head (LTE, LIIF, MetaSR, SRNO) reads features through ``gather_neighbours``
so that the nearest-feature rule and the area weights are written once.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

# LIIF/LTE add this to each shifted neighbour query (the same sign for both directions, as the
# authors' code does): a query on a feature-pixel centre then has that pixel as its (-) neighbour
# and the next one as its (+) neighbour, and gets the centre pixel at full weight.
ENSEMBLE_EPS = 1e-6


# A query on a feature-pixel centre (``centred``: the scale-1 queries of the cycle loss sit on the
# LR grid's centres) has rel_coord exactly 0 to its (-,-) neighbour, distance 2 to the (+) ones,
# and area weights 2 / (2 + 2e-9) = 1.0 in fp32 for that pixel against 5e-10, 5e-10 and 2.5e-19
# for the other three (the 1e-9 guard below); at the last row or column both neighbours of an
# axis are the same pixel. Evaluating the nearest feature alone is therefore the local ensemble
# to within ~1e-9 of the output, at a quarter of the decoder's work: ``ensemble_for(...)``.
def ensemble_for(local_ensemble: bool, centred: bool) -> bool:
    """Whether a head blends 4 neighbours for these queries: not when they are ``centred``."""
    return local_ensemble and not centred


def make_coord(height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Pixel-centre coordinates of an ``height x width`` grid, row-major: ``(height * width, 2)``."""
    ys = -1 + (2 * torch.arange(height, device=device, dtype=dtype) + 1) / height
    xs = -1 + (2 * torch.arange(width, device=device, dtype=dtype) + 1) / width
    grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1)
    return grid.reshape(-1, 2)


def make_cell(height: int, width: int, count: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """The cell ``(2 / height, 2 / width)`` of an ``height x width`` output, repeated: ``(count, 2)``."""
    cell = torch.tensor([2.0 / height, 2.0 / width], device=device, dtype=dtype)
    return cell.expand(count, 2).clone()


def nearest_index(coord: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column of the feature pixel whose cell contains each coordinate.

    ``coord``: ``(..., 2)``; returns two integer tensors of shape ``(...)``, clamped to the grid.
    """
    row = torch.floor((coord[..., 0] + 1) * height / 2).long().clamp_(0, height - 1)
    col = torch.floor((coord[..., 1] + 1) * width / 2).long().clamp_(0, width - 1)
    return row, col


def neighbour_offsets(local_ensemble: bool) -> list[tuple[int, int]]:
    """The ``(dy, dx)`` shifts, in feature pixels, whose nearest features a query blends."""
    if local_ensemble:
        return [(-1, -1), (-1, 1), (1, -1), (1, 1)]
    return [(0, 0)]


def gather_ready(fmap: torch.Tensor) -> torch.Tensor:
    """``fmap`` ``(B, C, h, w)`` laid out channels-last, so that ``gather_neighbours`` reads each
    query's C channels as one contiguous row of a ``(B*h*w, C)`` view, instead of copying the map
    into that layout on every call. Same values; heads call it once per image in ``encode``."""
    return fmap.contiguous(memory_format=torch.channels_last)


def gather_neighbours(
    maps: Sequence[torch.Tensor], coord: torch.Tensor, local_ensemble: bool
) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Nearest-feature lookup for each query, with LIIF's local ensemble.

    Args:
        maps: feature maps ``(B, C_k, h, w)`` that share one ``h x w`` grid.
        coord: queries ``(B, Q, 2)`` in ``[-1, 1]``.
        local_ensemble: blend the 4 nearest features (shifts of half a feature pixel up/down,
            left/right) with bilinear-like area weights; otherwise use the single nearest one.

    Returns:
        values: one tensor ``(B, N, Q, C_k)`` per map, N = 4 or 1 neighbours.
        rel_coord: ``(B, N, Q, 2)``, query minus feature-centre coordinate, multiplied by
            ``(h, w)`` (so one feature pixel spans 2 units, as in LIIF and LTE).
        weights: ``(B, N, Q)``, summing to 1 over N: each neighbour is weighted by the area of
            the rectangle between the query and the *diagonally opposite* neighbour's centre.
    """
    batch, queries, _ = coord.shape
    height, width = maps[0].shape[-2:]
    offsets = neighbour_offsets(local_ensemble)
    # All neighbours in one lookup: (B, N, Q, 2).
    shift = torch.tensor(offsets, device=coord.device, dtype=coord.dtype)
    shift = shift * torch.tensor([1.0 / height, 1.0 / width], device=coord.device, dtype=coord.dtype)
    if local_ensemble:
        shift = shift + ENSEMBLE_EPS
    shifted = (coord.unsqueeze(1) + shift.view(1, -1, 1, 2)).clamp(-1 + 1e-6, 1 - 1e-6)
    row, col = nearest_index(shifted, height, width)
    # Row of each (image, neighbour, query) in a table of all B*h*w feature pixels. One
    # index_select per map: its backward is an index_add, several times faster on a CPU than the
    # accumulating index_put that advanced indexing with a batch index needs.
    batch_offset = torch.arange(batch, device=coord.device).view(batch, 1, 1) * (height * width)
    flat_index = (row * width + col + batch_offset).reshape(-1)  # (B*N*Q,)
    values = []
    for fmap in maps:
        channels = fmap.shape[1]
        table = fmap.flatten(2).transpose(1, 2).reshape(-1, channels)  # (B*h*w, C), a view: gather_ready
        values.append(table.index_select(0, flat_index).view(batch, len(offsets), queries, channels))
    centre = torch.stack(
        [-1 + (2 * row.to(coord.dtype) + 1) / height, -1 + (2 * col.to(coord.dtype) + 1) / width],
        dim=-1,
    )
    scale = torch.tensor([height, width], device=coord.device, dtype=coord.dtype)
    rel_coord = (coord.unsqueeze(1) - centre) * scale
    if local_ensemble:
        # LIIF weighs neighbour k by the area |dy * dx| of the diagonally opposite one, over the
        # sum of the four areas. The opposite of (sy, sx) is (-sy, -sx), so that weight factors
        # exactly into a row weight times a column weight, each the opposite neighbour's distance
        # over the two distances. We compute the factored form: it is the same number, except
        # where LIIF's breaks down -- at the last row or column both neighbours of an axis clamp
        # to the same pixel, and a query on its centre has distance 0 to both, which makes all
        # four areas 0 and LIIF's weights a flat 1/4 that ignores the *other* axis too. Here only
        # that axis falls back to 1/2 + 1/2 (of the same pixel) and the other keeps its weights.
        # Offsets are ordered (-,-), (-,+), (+,-), (+,+).
        dist_y = torch.stack([rel_coord[:, 0, :, 0], rel_coord[:, 2, :, 0]], 1).abs() + 1e-9
        dist_x = torch.stack([rel_coord[:, 0, :, 1], rel_coord[:, 1, :, 1]], 1).abs() + 1e-9
        row_weight = dist_y.flip(1) / dist_y.sum(1, keepdim=True)  # (B, 2, Q): for sy = -, +
        col_weight = dist_x.flip(1) / dist_x.sum(1, keepdim=True)
        weights = (row_weight.unsqueeze(2) * col_weight.unsqueeze(1)).reshape(batch, 4, queries)
    else:
        weights = torch.ones(batch, 1, queries, device=coord.device, dtype=coord.dtype)
    return values, rel_coord, weights


def bilinear_sample(image: torch.Tensor, coord: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of ``image`` ``(B, C, h, w)`` at ``coord`` ``(B, Q, 2)``: ``(B, Q, C)``.

    Border padding, ``align_corners=False``: the skip connection of LTE and SRNO.
    """
    grid = coord.flip(-1).unsqueeze(1)  # grid_sample wants (x, y)
    sampled = F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return sampled[:, :, 0, :].transpose(1, 2)
