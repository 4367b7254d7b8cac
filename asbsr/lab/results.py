"""Tables 1 and 2 of Section 4, assembled from the benchmark of ``asbsr.lab.benchmark``.

The flow, one function per step:

1. ``obtain_upscalers`` -- a trained model per (method, training seed), from the zoo or trained
   (``asbsr.lab.zoo.obtain_model``), wrapped as ``(lr, size) -> sr``; Bicubic needs none.
2. ``run_benchmark`` -- every method x seed x set x scale on the benchmark samples of
   ``benchmark.degraded_set``: a tidy list of rows ``{method, seed, set, scale, image, psnr, ssim}``.
3. ``seed_means`` / ``table1_rows`` -- the mean over a set's images for each seed, then the mean
   +- standard deviation of those over the training seeds: Table 1's cells.
4. ``paired_rows`` / ``table2_differences`` -- Table 2's effects are 0.1-0.2 dB, smaller than
   the spread between images, so each variant is compared with another on the *same* samples
   (photos x degradation draws x seeds) with a paired Student-t interval
   (``benchmark.paired_difference``), and each difference gets a verdict in words.
5. ``table1_ordering`` / ``table2_ordering`` -- whether the paper's ordering holds in our numbers.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import torch

from asbsr.config import Config, DegradationConfig, method_config
from asbsr.degradation import Degradation
from asbsr.sampling import sample_degradation
from asbsr.lab.benchmark import (
    Upscaler, bicubic_upscaler, degraded_set, evaluate, image_seed, mean_std, model_upscaler,
    paired_difference,
)

BICUBIC = "bicubic"
RESOLVED = "resolved"
UNRESOLVED = "not resolved at this budget"
# Table 2's claim, "both designs improve performance individually and perform the best when
# being combined", as four pairwise inequalities (better, worse).
TABLE2_CLAIMS = (("implicit_only", "lte"), ("cycle_only", "lte"),
                 ("ours", "implicit_only"), ("ours", "cycle_only"))


def set_label(set_name: str | Path) -> str:
    """The name rows carry for a set: a named set as is, a folder by its last component."""
    return Path(str(set_name)).name


def benchmark_degradation(set_name: str | Path, image_name: str, scale: float, seed: int,
                          cfg: DegradationConfig, draw: int = 0) -> Degradation:
    """The degradation that ``benchmark.degraded_set`` gives image ``image_name`` (file stem) of
    ``set_name``: the same seeded draw, without loading or degrading the set. Lets a figure apply
    the benchmark's kernel and downsampler to a crop of the full-resolution photo."""
    generator = torch.Generator().manual_seed(image_seed(seed, set_label(set_name), image_name, draw))
    return sample_degradation(generator, cfg, scale=scale)


def zoo_has(config: Config, method: str) -> bool:
    """Whether the shipped zoo holds ``method`` trained with exactly ``config`` (seed included)."""
    from asbsr.lab.zoo import find_model

    return method == BICUBIC or find_model(method_config(config, method)) is not None


SMOKE_METHODS = ("lte", "ours")  # what is trained when the zoo holds nothing for this preset


def plan(config: Config, wanted: Sequence[str], methods: Sequence[str] | None = None,
         seeds: Sequence[int] | None = None, train: bool = False) -> tuple[list[str], list[int], str]:
    """Which methods and training seeds a table evaluates: ``(methods, seeds, note)``.

    Given ones are kept. Otherwise, with ``train``: every wanted method at ``config.eval.seeds``.
    Without, methods come first and seeds second: the wanted methods the zoo holds at the first
    seed of ``config.eval.seeds`` that has "ours", then every such seed at which the zoo holds all
    of them -- so a zoo with seven methods at seed 0 and four at seeds 0-2 gives a Table 1 of
    seven methods at one seed and a Table 2 of four at three. When the zoo holds none of them
    (e.g. at ``smoke``): ``SMOKE_METHODS`` at the first seed, trained here in seconds. Training
    every Table 1 method costs minutes at smoke and hours at cpu; the note says what was left out
    and how to include it.
    """
    wanted = list(wanted)
    learned = [m for m in wanted if m != BICUBIC]
    at = lambda seed, method: zoo_has(dataclasses.replace(config, seed=seed), method)  # noqa: E731
    candidates = [s for s in config.eval.seeds if at(s, "ours")] or [config.eval.seeds[0]]
    if methods is not None:
        chosen = list(methods)
    elif train:
        chosen = wanted
    else:
        chosen = [m for m in wanted if m == BICUBIC or at(candidates[0], m)]
    if seeds is None:
        if train:
            seeds = list(config.eval.seeds)
        else:
            need = [m for m in chosen if m != BICUBIC]
            seeds = [s for s in candidates if all(at(s, m) for m in need)] or candidates[:1]
    seeds = [int(s) for s in seeds]
    if methods is not None:
        return chosen, seeds, "methods as given"
    if train:
        return chosen, seeds, "every method trained here (TRAIN=True)"
    if len(chosen) > (BICUBIC in chosen):
        missing = [m for m in learned if m not in chosen]
        other = [s for s in candidates if s not in seeds]
        note = f"from the zoo at seeds {seeds}"
        if missing:
            note += (f"; not in the zoo, left out: {', '.join(missing)} (name them in METHODS, or "
                     "TRAIN=True, to train them here)")
        if other:
            note += f"; seeds {other} left out: the zoo lacks some of these methods there"
        return chosen, seeds, note
    chosen = [m for m in wanted if m == BICUBIC or m in SMOKE_METHODS]
    return chosen, seeds, (f"the zoo holds none of these {config.preset} models at seeds {seeds}: only "
                           f"{', '.join(SMOKE_METHODS)} (trained here); name others in METHODS to train them too")


def obtain_upscalers(config: Config, methods: Sequence[str], seeds: Sequence[int], folder,
                     train: bool = False, device=None, progress: bool = False,
                     report: Callable[[str], None] = print,
                     into: dict[str, dict[int, Upscaler]] | None = None) -> dict[str, dict[int, Upscaler]]:
    """``{method: {seed: upscaler}}`` for every learned method and training seed, from the zoo or
    trained under ``folder`` (``zoo.obtain_model``); ``report`` gets one status line each.
    ``"bicubic"`` maps to ``{0: bicubic_upscaler}`` (it has no training seed). Pairs already in
    ``into`` are kept as they are, and the new ones are added to it.

    Stage 1 is obtained once per seed and shared by the methods that need training.
    """
    from asbsr.lab.zoo import obtain_model, obtain_stage1

    upscalers: dict[str, dict[int, Upscaler]] = {} if into is None else into
    for seed in seeds:
        seeded = dataclasses.replace(config, seed=seed)
        stage1 = None
        for method in methods:
            if method == BICUBIC:
                upscalers.setdefault(BICUBIC, {0: bicubic_upscaler})
                continue
            if seed in upscalers.get(method, {}):
                continue
            if stage1 is None and (train or not zoo_has(seeded, method)):
                stage1 = obtain_stage1(seeded, folder, train=train, device=device, progress=progress)
                report(f"{'stage 1':>13} seed {seed}: {stage1.status}")
            model, _, _, status = obtain_model(seeded, method, folder, train=train, device=device,
                                               progress=progress, stage1=stage1)
            report(f"{method:>13} seed {seed}: {status}")
            upscalers.setdefault(method, {})[seed] = model_upscaler(model.eval(), seeded.eval.chunk)
    return upscalers


def run_benchmark(upscalers: Mapping[str, Mapping[int, Upscaler]], sets: Sequence[str | Path],
                  scales: Sequence[float], degradation_seed: int, cfg: DegradationConfig,
                  cache_dir=None, draws: int = 1, max_side: int | None = None,
                  report: Callable[[str], None] | None = None) -> list[dict]:
    """Evaluate every method x seed on every set x scale of the benchmark.

    Returns one row per (method, seed, set, scale, sample): ``{"method", "seed", "set",
    "scale", "image", "psnr", "ssim"}``; ``image`` names the sample (``name#draw`` when
    ``draws > 1``). All methods see the very same LR samples (``degraded_set`` with
    ``degradation_seed``, cached under ``cache_dir``).
    """
    rows = []
    for set_name in sets:
        for scale in scales:
            samples = degraded_set(str(set_name), float(scale), degradation_seed, cfg,
                                   cache_dir=cache_dir, draws=draws, max_side=max_side)
            for method, by_seed in upscalers.items():
                for seed, upscaler in by_seed.items():
                    for row in evaluate(upscaler, samples):
                        rows.append({"method": method, "seed": seed, "set": set_label(set_name),
                                     "scale": float(scale), "image": row["image"],
                                     "psnr": row["psnr"], "ssim": row["ssim"]})
            if report is not None:
                report(f"{set_label(set_name)} x{scale:g}: {len(samples)} samples, "
                       f"{len(upscalers)} methods done")
    return rows


def seed_means(rows: Iterable[dict], metric: str) -> dict[tuple, dict[int, float]]:
    """``{(method, set, scale): {seed: mean of metric over that set's samples}}``."""
    groups: dict[tuple, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        groups[(row["method"], row["set"], row["scale"])][row["seed"]].append(row[metric])
    return {key: {seed: float(sum(v) / len(v)) for seed, v in by_seed.items()}
            for key, by_seed in groups.items()}


def table1_rows(rows: Sequence[dict], methods: Sequence[str], sets: Sequence[str], scale: float,
                labels: Mapping[str, str] | None = None) -> list[dict]:
    """Rows for ``benchmark.format_table`` / ``write_csv`` at one scale:
    ``{"method": label, "<set> PSNR": (mean, std), "<set> SSIM": (mean, std), ...}``."""
    labels = labels or {}
    psnr, ssim = seed_means(rows, "psnr"), seed_means(rows, "ssim")
    table = []
    for method in methods:
        row = {"method": labels.get(method, method)}
        for name in sets:
            for metric, means in (("PSNR", psnr), ("SSIM", ssim)):
                by_seed = means.get((method, set_label(name), float(scale)))
                row[f"{set_label(name)} {metric}"] = (mean_std(list(by_seed.values()))
                                                     if by_seed else (math.nan, math.nan))
        table.append(row)
    return table


def table1_columns(sets: Sequence[str]) -> list[str]:
    return [f"{set_label(name)} {metric}" for name in sets for metric in ("PSNR", "SSIM")]


def paired_rows(rows: Iterable[dict], a: str, b: str, metric: str) -> tuple[list[float], list[float], list[tuple]]:
    """The values of methods ``a`` and ``b`` on the samples both were evaluated on, paired by
    (seed, set, scale, image). Bicubic (seed 0 only) pairs with every seed of the other."""
    values: dict[str, dict[tuple, float]] = {a: {}, b: {}}
    seeds: dict[str, set] = {a: set(), b: set()}
    for row in rows:
        if row["method"] in values:
            values[row["method"]][(row["seed"], row["set"], row["scale"], row["image"])] = row[metric]
            seeds[row["method"]].add(row["seed"])
    for method, other in ((a, b), (b, a)):
        if method == BICUBIC:  # deterministic: repeat it under each seed of the other method
            values[method] = {(s, *key[1:]): v for key, v in values[method].items() for s in seeds[other]}
    keys = sorted(set(values[a]) & set(values[b]), key=str)
    return [values[a][k] for k in keys], [values[b][k] for k in keys], keys


def verdict(difference: dict) -> str:
    """A difference in words: "resolved" when its interval excludes 0, else not resolved."""
    return RESOLVED if difference["resolved"] else UNRESOLVED


def compare(rows: Sequence[dict], a: str, b: str, metric: str = "psnr",
            confidence: float = 0.95) -> dict:
    """Paired difference ``a - b`` of ``metric`` over the common samples (``paired_difference``)
    with ``a``, ``b``, ``metric`` and the ``verdict``; ``n = 0`` when they share no sample."""
    first, second, _ = paired_rows(rows, a, b, metric)
    if not first:
        return {"a": a, "b": b, "metric": metric, "mean": math.nan, "low": math.nan,
                "high": math.nan, "n": 0, "resolved": False, "verdict": UNRESOLVED}
    difference = paired_difference(first, second, confidence)
    return {"a": a, "b": b, "metric": metric, **difference, "verdict": verdict(difference)}


def gains(rows: Sequence[dict], methods: Sequence[str], reference: str, scales: Sequence[float],
          metric: str = "psnr", confidence: float = 0.95) -> dict[str, dict[float, dict]]:
    """``{method: {scale: compare(method, reference)}}`` on the rows of each scale: how far each
    method is above (say) Bicubic, paired over every set's samples and seed, with an interval."""
    out: dict[str, dict[float, dict]] = {}
    for method in methods:
        if method == reference:
            continue
        for scale in scales:
            at_scale = [r for r in rows if r["scale"] == float(scale)]
            out.setdefault(method, {})[float(scale)] = compare(at_scale, method, reference, metric, confidence)
    return out


def table2_differences(rows: Sequence[dict], methods: Sequence[str], metric: str = "psnr",
                       confidence: float = 0.95) -> list[dict]:
    """Table 2's claims (``TABLE2_CLAIMS``) whose two variants were both run, as ``compare``."""
    return [compare(rows, a, b, metric, confidence) for a, b in TABLE2_CLAIMS
            if a in methods and b in methods]


def ordering_word(difference: dict) -> str:
    """``holds`` / ``reversed`` (interval excludes 0) or ``not resolved at this budget``."""
    if not difference["resolved"]:
        return UNRESOLVED
    return "holds" if difference["mean"] > 0 else "reversed"


def ordering_status(words: Sequence[str]) -> str:
    """One verdict from the per-difference words: ``"contradicted"`` if any claim is resolved the
    other way, ``"holds"`` if all are resolved the claimed way, else not resolved."""
    if not words:
        return "nothing to compare"
    if "reversed" in words:
        return "contradicted"
    if all(w == "holds" for w in words):
        return "holds"
    return UNRESOLVED


def table2_ordering(differences: Sequence[dict]) -> dict:
    """Whether Table 2's ordering (each design helps; both together help most) holds here.

    ``status``: ``"holds"`` when every claimed difference is resolved in the claimed direction,
    ``"contradicted"`` when one is resolved the other way, else ``"not resolved at this budget"``;
    ``claims`` lists each difference with its own word and ``sentence`` says it in one line."""
    words = [ordering_word(d) for d in differences]
    status = ordering_status(words)
    parts = [f"{d['a']} - {d['b']} = {d['mean']:+.3f} dB [{d['low']:+.3f}, {d['high']:+.3f}] "
             f"({w})" for d, w in zip(differences, words)]
    sentence = f"Table 2's ordering {status}" + (": " + "; ".join(parts) if parts else "")
    return {"status": status, "claims": [{**d, "word": w} for d, w in zip(differences, words)],
            "sentence": sentence}


def table1_ordering(rows: Sequence[dict], methods: Sequence[str], best: str = "ours",
                    metric: str = "psnr", confidence: float = 0.95) -> dict:
    """Whether Table 1's ordering -- ``best`` first -- holds in our numbers.

    Two readings: ``cells_won``, the fraction of (set, scale) cells where ``best`` has the
    highest mean (the paper: best "on almost all benchmarks"), and a paired comparison with
    every other method over all samples (sets x scales x images x seeds). ``status`` is
    ``"holds"`` when ``best`` is ahead of every other method with the interval excluding 0
    (the samples of one image at several scales are correlated, so these intervals are
    somewhat optimistic),
    ``"contradicted"`` when some method is resolved ahead of it, else
    ``"not resolved at this budget"``."""
    others = [m for m in methods if m != best]
    means = seed_means(rows, metric)
    cells = sorted({(s, c) for (m, s, c) in means if m == best}, key=str)
    won = 0
    for set_name, scale in cells:
        scores = {m: mean_std(list(means[(m, set_name, scale)].values()))[0]
                  for m in methods if (m, set_name, scale) in means}
        won += max(scores, key=scores.get) == best
    differences = [compare(rows, best, other, metric, confidence) for other in others]
    words = [ordering_word(d) for d in differences]
    status = ordering_status(words)
    fraction = won / len(cells) if cells else math.nan
    sentence = (f"Table 1's ordering ({best} first) {status}: {best} has the best mean {metric.upper()} "
                f"in {won} of {len(cells)} cells; paired over all samples, " + "; ".join(
                    f"{best} - {d['b']} = {d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] ({w})"
                    for d, w in zip(differences, words)))
    return {"status": status, "cells_won": won, "cells": len(cells), "fraction_won": fraction,
            "comparisons": [{**d, "word": w} for d, w in zip(differences, words)],
            "sentence": sentence}


def table2_rows(rows: Sequence[dict], methods: Sequence[str], set_name: str, scale: float,
                labels: Mapping[str, str] | None = None) -> list[dict]:
    """Rows ``{"variant", "PSNR": (mean, std), "SSIM": (mean, std), "n"}`` of our Table 2."""
    labels = labels or {}
    table = []
    for method in methods:
        entry = {"variant": labels.get(method, method)}
        for metric in ("psnr", "ssim"):
            by_seed = seed_means(rows, metric).get((method, set_label(set_name), float(scale)))
            entry[metric.upper()] = mean_std(list(by_seed.values())) if by_seed else (math.nan, math.nan)
        entry["samples"] = sum(1 for r in rows if r["method"] == method
                               and r["set"] == set_label(set_name) and r["scale"] == float(scale))
        table.append(entry)
    return table
