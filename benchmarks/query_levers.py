"""Three pieces of an LTE query, the way asbsr computed them before and the way it does now, at
the paper-size shapes: for the record of why they changed.

    python benchmarks/query_levers.py [--threads 2] [--repeats 5] [--system-malloc]

* **angle**: ``pi (F delta + phi)`` from the frequency pairs, stage-2 shapes (16 x 4 neighbours x
  2,304 queries x 256 channels). Before: a product over ``(..., C/2, 2)`` pairs and a sum over the
  last axis, then ``* pi``; now (``lte.fourier_rows``): two fused multiply-adds over the even and
  odd channels.
* **gather**: the four neighbours' rows of a 48x48 feature map of 256 channels, forward and
  backward. Before: advanced indexing with a batch index (backward: an accumulating
  ``index_put``); now (``coords.gather_neighbours``): ``index_select`` on the table of all
  B*h*w rows (backward: ``index_add``).
* **MLP without autograd**: 120,000 rows (a 30,000-query inference chunk x 4 neighbours) through
  the paper's 256-256-256-3 MLP in one call, and in blocks of ``RowMLP.block_rows`` rows.

Prints the best of ``repeats`` calls of each, and the largest difference between the two ways.
"""

from __future__ import annotations

import argparse
import math
import os
import time

import torch

from asbsr.memory import ENVIRONMENT, keep_freed_memory
from asbsr.models.heads import make_mlp

B, N, Q, C, SIDE = 16, 4, 2304, 256, 48


def best(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def angle_case(generator):
    freq = torch.randn(B, N, Q, C, generator=generator)
    rel = torch.rand(B, N, Q, 2, generator=generator) * 2 - 1
    phase = torch.randn(B, 1, Q, C // 2, generator=generator)

    def before():
        return (freq.view(B, N, Q, -1, 2) * rel.unsqueeze(-2)).sum(-1).add(phase).mul(math.pi)

    def now():
        rel_pi = rel * math.pi
        angle = torch.addcmul(phase * math.pi, freq[..., 0::2], rel_pi[..., 0:1])
        return angle.addcmul_(freq[..., 1::2], rel_pi[..., 1:2])
    return before, now


def gather_case(generator):
    fmap = torch.randn(B, C, SIDE, SIDE, generator=generator).contiguous(memory_format=torch.channels_last)
    fmap.requires_grad_(True)
    index = torch.randint(0, SIDE * SIDE, (B, N * Q), generator=generator)
    upstream = torch.randn(B, N * Q, C, generator=generator)
    batch_index = torch.arange(B).unsqueeze(1)
    flat = (index + batch_index * SIDE * SIDE).reshape(-1)

    def run(read):
        fmap.grad = None
        rows = read(fmap.flatten(2).transpose(1, 2))
        rows.backward(upstream.view_as(rows))
        return fmap.grad

    def before():
        return run(lambda table: table[batch_index, index])

    def now():
        return run(lambda table: table.reshape(-1, C).index_select(0, flat))
    return before, now


def mlp_case(generator):
    torch.manual_seed(0)
    mlp = make_mlp(C, (C, C, C), 3)
    rows = torch.randn(120_000, C, generator=generator)

    def before():
        with torch.no_grad():
            return torch.nn.Sequential.forward(mlp, rows)

    def now():
        with torch.no_grad():
            return mlp(rows)
    return before, now


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--system-malloc", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.system_malloc:
        os.environ[ENVIRONMENT] = "0"
    kept = keep_freed_memory()
    generator = torch.Generator().manual_seed(0)
    print(f"threads {args.threads}, keep_freed_memory {kept}")
    for name, case in (("angle", angle_case), ("gather, forward and backward", gather_case),
                       ("MLP without autograd", mlp_case)):
        before, now = case(generator)
        gap = float((before() - now()).abs().max())
        slow, fast = best(before, args.repeats), best(now, args.repeats)
        print(f"{name:30s} before {slow * 1e3:7.1f} ms   now {fast * 1e3:7.1f} ms   "
              f"({slow / fast:.2f}x)   max |before - now| {gap:.2g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
