"""Small pieces every arbitrary-scale head shares (LTE and the baselines of Table 1)."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class RowMLP(nn.Sequential):
    """An ``nn.Sequential`` of linear layers and ReLUs that decodes each row on its own.

    Any leading shape ``(..., in_dim)`` runs as one 2-D batch of rows: on a 4-D input the in-place
    ReLUs would act on views of the linear layers' outputs, which autograd copies back and forth.
    Without autograd on a CPU (inference), a batch of many rows goes through in blocks of
    ``block_rows``: the same products row by row, but each block's activations stay in the
    processor's cache and its buffers under glibc's mmap threshold, which made the paper-size
    MLP 10 % faster on the 2-core CPU of benchmarks/RESULTS.md (``benchmarks/query_levers.py``:
    a 30,000-query chunk is 120,000 rows of 256 channels per layer) and lowered the peak memory
    of an inference. With autograd one call (blocks were no faster in a training step), and on
    a GPU one call (blocks would only add kernel launches there; not measured).
    """

    block_rows = 4096

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1])
        if torch.is_grad_enabled() or x.device.type != "cpu" or rows.shape[0] <= 2 * self.block_rows:
            out = super().forward(rows)
        else:
            out = torch.cat([super(RowMLP, self).forward(rows[start:start + self.block_rows])
                             for start in range(0, rows.shape[0], self.block_rows)])
        return out.view(*x.shape[:-1], out.shape[-1])


def make_mlp(in_dim: int, hidden: Sequence[int], out_dim: int) -> RowMLP:
    """``in_dim -> hidden[0] -> ... -> hidden[-1] -> out_dim`` with ReLU between layers and none
    after the last.

    Works on any leading shape ``(..., in_dim)``, so each query (and each neighbour) is decoded
    independently of the others.
    """
    layers: list[nn.Module] = []
    last = in_dim
    for size in hidden:
        layers += [nn.Linear(last, size), nn.ReLU(inplace=True)]
        last = size
    layers.append(nn.Linear(last, out_dim))
    return RowMLP(*layers)


def normalise(lr: torch.Tensor) -> torch.Tensor:
    """``[0, 1] -> [-1, 1]``: every head works on ``(x - 0.5) / 0.5`` (the LIIF/LTE convention)."""
    return (lr - 0.5) / 0.5


def unfold3x3(feat: torch.Tensor) -> torch.Tensor:
    """The 3x3 neighbourhood of each pixel stacked on channels, zero-padded at the border.

    ``feat``: ``(B, C, h, w)`` -> ``(B, 9C, h, w)``, channel ``c * 9 + 3 * i + j`` holds
    ``feat[:, c, y + i - 1, x + j - 1]`` (``F.unfold``'s channel-major order).
    """
    batch, channels, height, width = feat.shape
    return F.unfold(feat, kernel_size=3, padding=1).view(batch, channels * 9, height, width)


def cell_in_lr_pixels(cell: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The query cell ``(B, Q, 2)`` in the units of ``rel_coord``: ``cell * (h, w)``.

    One LR feature pixel spans 2 units of ``rel_coord``, so an output pixel of an ``x s``
    upscaling is ``2 / s`` units long; LIIF feeds exactly this to its decoder, LTE its phase.
    """
    return cell * torch.tensor([height, width], device=cell.device, dtype=cell.dtype)
