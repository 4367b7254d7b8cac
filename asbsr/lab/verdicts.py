"""Sentences computed from numbers: what a notebook or the README says about a result.

A notebook that states "X beats Y" must state it from the numbers it shows, so that a rerun with
other models, photos or seeds cannot leave a claim standing that its own numbers contradict. Each
function here takes the numbers and returns the sentence; the notebooks print it beside the table
it summarises. Every outcome of every function is tested (``tests/test_verdicts.py``).
"""

from __future__ import annotations

from typing import Sequence


def _signed(value: float, unit: str, digits: int) -> str:
    return f"{value:+.{digits}f}{(' ' + unit) if unit else ''}"


def _plain(value: float, unit: str, digits: int) -> str:
    return f"{value:.{digits}f}{(' ' + unit) if unit else ''}"


def compare(name_a: str, a: float, name_b: str, b: float, unit: str = "dB", digits: int = 2,
            tie: float = 0.0, higher_is_better: bool = True) -> str:
    """One number against another: which is better and by how much, or a tie within ``tie``."""
    difference = a - b
    if abs(difference) <= tie:
        return (f"{name_a} ({_plain(a, unit, digits)}) and {name_b} ({_plain(b, unit, digits)}) are "
                f"level: they differ by {_plain(abs(difference), unit, digits)}, within {tie:g}.")
    better = (difference > 0) == higher_is_better
    return (f"{name_a} ({_plain(a, unit, digits)}) is {'better' if better else 'worse'} than {name_b} "
            f"({_plain(b, unit, digits)}) by {_plain(abs(difference), unit, digits)}.")


def paired(name_a: str, name_b: str, mean: float, low: float, high: float, n: int,
           unit: str = "dB", level: float = 0.95, digits: int = 2) -> str:
    """A paired difference ``a - b`` with its confidence interval: resolved, or not."""
    interval = f"{level:.0%} CI [{_signed(low, '', digits)}, {_signed(high, '', digits)}] over {n} samples"
    head = f"{name_a} − {name_b}: {_signed(mean, unit, digits)} ({interval})"
    if low > 0:
        return f"{head}: {name_a} is better, and the interval excludes zero."
    if high < 0:
        return f"{head}: {name_a} is worse, and the interval excludes zero."
    return f"{head}: the interval includes zero, so these samples do not tell the two apart."


def against_paper(name: str, ours: float, low: float, high: float, paper: float,
                  unit: str = "dB", digits: int = 2) -> str:
    """Whether a measured effect's interval holds the paper's value of it."""
    where = (f"inside our interval [{_signed(low, '', digits)}, {_signed(high, '', digits)}]"
             if low <= paper <= high else
             f"outside our interval [{_signed(low, '', digits)}, {_signed(high, '', digits)}]")
    return (f"{name}: the paper reports {_signed(paper, unit, digits)}, we measure "
            f"{_signed(ours, unit, digits)}; the paper's value lies {where}.")


def all_above(name: str, values: Sequence[float], floor: float, labels: Sequence[str],
              unit: str = "dB", digits: int = 2) -> str:
    """Whether every one of a row of numbers clears a floor, naming those that do not."""
    below = [f"{label} ({_plain(v, unit, digits)})" for label, v in zip(labels, values) if v < floor]
    if not below:
        return f"{name}: every value is above {_plain(floor, unit, digits)} (lowest {_plain(min(values), unit, digits)})."
    return f"{name}: below {_plain(floor, unit, digits)} at {', '.join(below)}."


def trend(name: str, rho: float, xs_name: str, strong: float = 0.7) -> str:
    """A Spearman correlation in words: follows, loosely follows, or does not follow."""
    if abs(rho) >= strong:
        word = "rises" if rho > 0 else "falls"
        return f"{name} {word} with {xs_name} (Spearman ρ {rho:+.2f})."
    if abs(rho) >= 0.3:
        word = "rises" if rho > 0 else "falls"
        return f"{name} loosely {word} with {xs_name} (Spearman ρ {rho:+.2f}, below {strong:g} in size)."
    return f"{name} does not follow {xs_name} (Spearman ρ {rho:+.2f})."
