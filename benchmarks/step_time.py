"""Seconds per paper-size training step, phase by phase, of whichever asbsr is imported: for
before/after comparisons of a speed change.

    python benchmarks/step_time.py --stage 2 [--warmup 2] [--steps 4] [--four-neighbour-cycle]
                                   [--system-malloc]

Runs ``perf.py``'s step (the package's samplers, ``stage1_loss`` / ``stage2_loss``, backward,
Adam) at the ``gpu`` preset's sizes in one process and prints one JSON line with the mean
seconds of each phase. To time an older version, check it out beside this one and run its own
copy of this script, e.g. ``git worktree add ../before <commit>`` then, from ``../before``,
``PYTHONPATH=. python benchmarks/step_time.py ...``; versions from 86e78f1 on have it (that one
without ``--system-malloc``: it always ran with glibc's defaults).
``--four-neighbour-cycle`` decodes the cycle's scale-1 queries from all four local-ensemble
neighbours, as before that lever (``coords.ensemble_for``). ``--system-malloc``: glibc's allocator
at its defaults instead of ``asbsr.memory.keep_freed_memory()``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import perf  # noqa: E402

from asbsr.config import make_config  # noqa: E402
from asbsr.data import load_set  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", type=int, choices=(1, 2), default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--label", default="")
    parser.add_argument("--four-neighbour-cycle", action="store_true")
    parser.add_argument("--system-malloc", action="store_true")
    args = parser.parse_args(argv)
    kept = perf.allocator(args.system_malloc)
    if args.four_neighbour_cycle:
        import asbsr.models.lte as lte
        lte.ensemble_for = lambda local_ensemble, centred: local_ensemble
    images = [image for _, image in load_set("val", max_side=400)]
    step = perf._stage_steps(args.stage, make_config("gpu"), torch.device("cpu"), images)
    for index in range(args.warmup):
        step(index)
    rows = [step(args.warmup + index) for index in range(args.steps)]
    mean = {phase: round(sum(row[phase] for row in rows) / len(rows), 3) for phase in perf.PHASES}
    print(json.dumps({"label": args.label, "stage": args.stage, "threads": torch.get_num_threads(),
                      "keep_freed_memory": kept,
                      "steps": args.steps, **mean, "step_s": round(sum(mean.values()), 3)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
