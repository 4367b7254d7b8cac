"""Would ``torch.compile`` speed up LTE's elementwise work? A lever measured, not adopted.

    python benchmarks/compile_lever.py [--threads T] [--repeats R]

The elementwise block of ``LTE.query`` between the neighbour gather and the MLP --
``asbsr.models.lte.fourier_rows``: the angle ``pi (F delta + phi)`` from the frequency pairs, its
cosine and sine, and the product with the amplitudes -- at the paper-size stage-2 shapes (16
patches x 4 neighbours x 2,304 HR queries x 256 channels), forward and backward, eagerly and
through ``torch.compile`` (inductor). Prints the compilation time and the best of ``R`` calls of each;
the outputs and gradients are compared.
"""

from __future__ import annotations

import argparse
import time

import torch

from asbsr.memory import keep_freed_memory
from asbsr.models.lte import fourier_rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    keep_freed_memory()  # as in training
    generator = torch.Generator().manual_seed(0)
    shape = (16, 4, 2304, 256)
    inputs = [torch.randn(shape, generator=generator), torch.randn(shape, generator=generator),
              torch.rand(16, 4, 2304, 2, generator=generator) * 2 - 1,
              torch.randn(16, 1, 2304, 128, generator=generator)]
    for tensor in (inputs[0], inputs[1], inputs[3]):
        tensor.requires_grad_(True)
    upstream = torch.randn(shape, generator=generator)

    def call(fn):
        for tensor in inputs:
            tensor.grad = None
        started = time.perf_counter()
        out = fn(*inputs)
        out.backward(upstream)
        return time.perf_counter() - started, out.detach(), [t.grad for t in inputs if t.requires_grad]

    compiled = torch.compile(fourier_rows)
    compile_seconds, compiled_out, compiled_grads = call(compiled)
    eager = min(call(fourier_rows)[0] for _ in range(args.repeats))
    fused = min(call(compiled)[0] for _ in range(args.repeats))
    _, eager_out, eager_grads = call(fourier_rows)
    gap = max([float((compiled_out - eager_out).abs().max())] +
              [float((a - b).abs().max()) for a, b in zip(compiled_grads, eager_grads)])
    print(f"threads {torch.get_num_threads()}: eager {eager:.3f} s, compiled {fused:.3f} s "
          f"({eager / fused:.2f}x), first compiled call (compilation) {compile_seconds:.1f} s, "
          f"max |compiled - eager| over output and gradients {gap:.2g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
