"""Where the time of a paper-size step goes, op by op, timed with a wall clock around each op.

    python benchmarks/op_share.py [--case stage1,stage2,inference] [--calls 2] [--threads 2]
                                  [--system-malloc] [--out FILE]

For each case it runs perf.py's warmed-up step (the network part: forward, backward, Adam; the
sampling is left out) or the side-by-side script's inference call (a 128x128 photo crop at x4,
chunks of 30,000 queries), and times every ATen op of the timed calls inside a
``TorchDispatchMode`` (``time.perf_counter`` before and after each op, forward and backward).
It prints the wall time per call, the time spent in matrix products (matrix multiplications and
convolutions, forward and backward) and their share of the wall time, and the slowest ops.
Time outside any op (Python, autograd bookkeeping) counts as not a matrix product.

Why a wall clock per op rather than ``torch.profiler``: the per-op times printed here add up to
within a few per cent of the wall time of the calls (both are printed), so the share can be
checked; the profiler's table, used for the shares before, carries its own overhead into the ops
it times and did not add up to the step's wall time.

CPU only (a CUDA op returns before it has run). ``--system-malloc`` leaves glibc's allocator at its
defaults instead of ``asbsr.memory.keep_freed_memory()``, which training and inference apply.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
import perf  # noqa: E402
from side_by_side import CHUNK, INFER_SCALE, INFER_SIDE  # noqa: E402  (the same inference call)

from asbsr.config import make_config  # noqa: E402
from asbsr.data import load_set  # noqa: E402
from asbsr.files import atomic_write_text  # noqa: E402
from asbsr.inference import upscale  # noqa: E402

MATRIX_PRODUCTS = {"aten.mm", "aten.addmm", "aten.bmm", "aten.baddbmm", "aten.matmul", "aten.linear",
                   "aten.convolution", "aten._convolution", "aten.convolution_backward",
                   "aten.mkldnn_convolution", "aten.cudnn_convolution"}


class OpClock(TorchDispatchMode):
    """Wall seconds and calls per ATen op (by overload packet) while active."""

    def __init__(self):
        super().__init__()
        self.seconds: collections.Counter = collections.Counter()
        self.calls: collections.Counter = collections.Counter()
        self.active = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        started = time.perf_counter()
        out = func(*args, **(kwargs or {}))
        if self.active:
            name = str(func.overloadpacket)
            self.seconds[name] += time.perf_counter() - started
            self.calls[name] += 1
        return out


def measure(case: str, images: list[torch.Tensor], calls: int, warmup: int) -> dict:
    clock = OpClock()
    config = make_config("gpu")
    cpu = torch.device("cpu")
    if case in ("stage1", "stage2"):
        step = perf._stage_steps(int(case[-1]), config, cpu, images, network=lambda: clock)
        run = step
    else:
        _, model = perf.build_model("gpu", cpu)
        lr = images[0][None, :, :INFER_SIDE, :INFER_SIDE].contiguous()

        def run(index):
            begun = time.perf_counter()
            with clock:
                upscale(model, lr, scale=INFER_SCALE, chunk=CHUNK)
            return {"call": time.perf_counter() - begun}
    for index in range(warmup):
        run(index)
    clock.active = True
    wall = 0.0
    for index in range(warmup, warmup + calls):
        phases = run(index)
        wall += sum(seconds for phase, seconds in phases.items() if phase != "sampling")
    per_call = {name: seconds / calls for name, seconds in clock.seconds.items()}
    products = sum(seconds for name, seconds in per_call.items() if name in MATRIX_PRODUCTS)
    ops = sum(per_call.values())
    wall /= calls
    top = sorted(per_call.items(), key=lambda item: -item[1])[:15]
    return {"case": case, "calls": calls, "wall_s": round(wall, 4), "ops_s": round(ops, 4),
            "matrix_products_s": round(products, 4), "matrix_share_of_wall": round(products / wall, 4),
            "top": [{"op": name, "ms": round(seconds * 1e3, 1), "calls": clock.calls[name] // calls}
                    for name, seconds in top]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", default="stage1,stage2,inference")
    parser.add_argument("--calls", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--system-malloc", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    kept = perf.allocator(args.system_malloc)
    images = [image for _, image in load_set("val", max_side=400)]
    rows = []
    for case in args.case.split(","):
        row = measure(case, images, args.calls, args.warmup)
        rows.append(row)
        print(f"{case}: {row['wall_s']:.3f} s per call, ops {row['ops_s']:.3f} s, matrix products "
              f"{row['matrix_products_s']:.3f} s = {row['matrix_share_of_wall']:.1%} of the wall time "
              f"(threads {args.threads}, keep_freed_memory {kept})")
        for entry in row["top"][:10]:
            print(f"    {entry['op']:34s} {entry['ms']:9.1f} ms  {entry['calls']:5d} calls")
    if args.out:
        atomic_write_text(args.out, json.dumps({"threads": args.threads, "keep_freed_memory": kept,
                                                "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
