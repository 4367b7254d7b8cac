"""How many training steps fit a time budget: the preset's step counts when they fit, else both
stages cut by one factor. scripts/gpu_train.sh trains within a budget on a CUDA machine; it
measures the training rates first (benchmarks/perf.py) and asks this module for the counts.

    python -m asbsr.lab.step_budget --preset gpu --budget 300 --unit 250 \\
        (--rates-file perf_train.json | --rates 1=2.5,2=1.0)

prints the overrides for ``python -m asbsr.lab.zoo_train --set``, one a line (``stage1.steps=750``),
none when the preset's counts fit, and on stderr the arithmetic behind them.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from asbsr.config import make_config

STAGES = (1, 2)


def training_seconds(steps: dict[int, int], rates: dict[int, float]) -> float:
    """Seconds that ``steps`` of both stages take at ``rates`` (it/s per stage)."""
    return sum(steps[stage] / rates[stage] for stage in STAGES)


def plan_steps(steps: dict[int, int], rates: dict[int, float], budget_s: float, unit: int) -> dict[int, int]:
    """The step count of each stage (1 and 2) that fits ``budget_s`` seconds of training steps
    at ``rates`` (iterations per second per stage).

    When the preset's ``steps`` take at most the budget they are returned unchanged. Otherwise
    both stages are scaled by one factor, budget / seconds, so that their ratio, which the
    schedule was tuned for, is kept; each is rounded down to a multiple of ``unit`` (checkpoint
    intervals stay round) but never below ``unit``, so a stage is never skipped. That floor can
    overshoot a tiny budget: a model trained for ``unit`` steps is still a model.
    """
    if unit < 1:
        raise ValueError(f"the rounding unit must be >= 1 step, got {unit}")
    for stage in STAGES:
        if stage not in rates:
            raise ValueError(f"no training rate for stage {stage} (rates given: {sorted(rates)})")
        if not rates[stage] > 0:
            raise ValueError(f"the training rate of stage {stage} must be > 0 it/s, got {rates[stage]}")
    seconds = training_seconds(steps, rates)
    if seconds <= budget_s:
        return {stage: steps[stage] for stage in STAGES}
    factor = budget_s / seconds
    return {stage: max(unit, math.floor(steps[stage] * factor / unit) * unit) for stage in STAGES}


def parse_rates(text: str) -> dict[int, float]:
    """Rates written ``1=2.5,2=1.0`` (stage=it/s), as GPU_TRAIN_RATES gives them."""
    try:
        pairs = (item.split("=") for item in text.split(","))
        return {int(stage): float(rate) for stage, rate in pairs}
    except ValueError:
        raise ValueError(f"rates must read like 1=2.5,2=1.0 (stage=it/s), got {text!r}") from None


def read_rates(perf_json: Path, preset: str) -> dict[int, float]:
    """The training rates that benchmarks/perf.py measured at ``preset``'s size."""
    training = json.loads(perf_json.read_text())["training"]
    return {row["stage"]: row["it_per_s"] for row in training if row["size"] == preset}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m asbsr.lab.step_budget", description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", required=True, help="whose step counts to fit")
    parser.add_argument("--budget", type=float, required=True, help="seconds of training steps")
    parser.add_argument("--unit", type=int, required=True, help="cut counts are multiples of this")
    rates = parser.add_mutually_exclusive_group(required=True)
    rates.add_argument("--rates-file", type=Path, help="benchmarks/perf.py's JSON of training rates")
    rates.add_argument("--rates", help="stage=it/s pairs, e.g. 1=2.5,2=1.0")
    args = parser.parse_args(argv)

    if args.rates is None and not args.rates_file.exists():
        print("no training rates (step 1 did not run): the preset's step counts are used", file=sys.stderr)
        return 1
    config = make_config(args.preset)
    steps = {1: config.stage1.steps, 2: config.stage2.steps}
    try:
        rates = parse_rates(args.rates) if args.rates is not None else read_rates(args.rates_file, args.preset)
        planned = plan_steps(steps, rates, args.budget, args.unit)
    except ValueError as error:
        print(f"step_budget: {error}", file=sys.stderr)
        return 1
    seconds = training_seconds(steps, rates)
    factor = min(1.0, args.budget / seconds)
    print(f"preset {args.preset}: {steps[1]} + {steps[2]} steps at {rates[1]} / {rates[2]} it/s = "
          f"{seconds:.0f} s of steps; budget {args.budget:.0f} s -> factor {factor:.3f}", file=sys.stderr)
    if planned != steps:
        for stage in STAGES:
            print(f"stage{stage}.steps={planned[stage]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
