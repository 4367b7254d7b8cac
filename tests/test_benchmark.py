"""The unknown-degradation benchmark (asbsr.lab.benchmark), the assembly of Tables 1 and 2
(asbsr.lab.results) and the paper's tables as data (asbsr.lab.paper_results)."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from scipy import stats

from asbsr.config import make_config
from asbsr.data import save_image
from asbsr.degradation import lr_size
from asbsr.metrics import crop_hr_to_lr_grid, psnr_y, shave_for, ssim_y
from asbsr.lab import benchmark, paper_results, results
from asbsr.lab.benchmark import (
    bicubic_upscaler, degraded_set, evaluate, format_table, mean_std, paired_difference,
    rank_marks, write_csv,
)

torch.set_num_threads(1)
CFG = make_config("smoke").degradation


def smooth_image(height: int, width: int, seed: int) -> torch.Tensor:
    """A photo-like test image: smooth random colour fields plus some texture, (3, H, W)."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, 6, 6, generator=gen)
    base = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)
    return (base[0] + 0.1 * torch.rand(3, height, width, generator=gen)).clamp(0, 1)


@pytest.fixture()
def photo_folder(tmp_path):
    """Three small images with odd, non-square sizes, saved as PNG (exact 8-bit values)."""
    folder = tmp_path / "photos"
    for index, (height, width) in enumerate([(45, 53), (61, 40), (37, 37)]):
        save_image(smooth_image(height, width, index), folder / f"img{index}.png")
    return folder


# -- the benchmark samples ------------------------------------------------------------------------

def test_two_generations_are_bit_identical(photo_folder):
    first = degraded_set(str(photo_folder), 3.6, 7, CFG, draws=2)
    second = degraded_set(str(photo_folder), 3.6, 7, CFG, draws=2)
    assert [s.name for s in first] == [f"img{i}#{d}" for i in range(3) for d in range(2)]
    for a, b in zip(first, second):
        assert a.degradation == b.degradation
        assert torch.equal(a.lr, b.lr) and torch.equal(a.hr, b.hr)
    # another benchmark seed draws other degradations
    other = degraded_set(str(photo_folder), 3.6, 8, CFG, draws=2)
    assert any(a.degradation != b.degradation for a, b in zip(first, other))
    # two draws of one image differ
    assert first[0].degradation != first[1].degradation


def test_lr_is_stored_at_8_bits_and_sizes_fit_the_scale(photo_folder):
    for scale in (3.0, 3.6, 4.0):
        for sample in degraded_set(str(photo_folder), scale, 0, CFG):
            levels = sample.lr * 255
            assert torch.equal(levels, levels.round()) and sample.lr.min() >= 0 and sample.lr.max() <= 1
            height, width = sample.hr.shape[-2:]
            h, w = sample.lr.shape[-2:]
            assert (h, w) == lr_size((height, width), scale)
            # an x s query of the LR image has exactly the HR size
            assert (round(h * scale), round(w * scale)) == (height, width)


def test_each_image_keeps_its_kernel_at_every_scale_and_whatever_else_is_in_the_folder(photo_folder):
    by_scale = {s: {x.name: x.degradation for x in degraded_set(str(photo_folder), s, 3, CFG)}
                for s in (3.0, 4.0)}
    for name, degradation in by_scale[3.0].items():
        other = by_scale[4.0][name]
        assert (degradation.kernel_size, degradation.lambda1, degradation.theta, degradation.mode) == \
               (other.kernel_size, other.lambda1, other.theta, other.mode)
        assert (degradation.scale, other.scale) == (3.0, 4.0)
    # adding a file does not change the others' degradations (no dependence on file order)
    save_image(smooth_image(40, 40, 9), photo_folder / "aaa_first.png")
    again = {x.name: x.degradation for x in degraded_set(str(photo_folder), 3.0, 3, CFG)}
    assert all(again[name] == d for name, d in by_scale[3.0].items())


def test_manifest_round_trips_through_the_cache_folder(photo_folder, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    written = degraded_set(str(photo_folder), 3.6, 5, CFG, cache_dir=cache, draws=2)
    (folder,) = cache.glob("photos-x3.6-seed5-d2-*")  # the suffix hashes the procedure
    manifest = json.loads((folder / "manifest.json").read_text())
    assert (manifest["set"], manifest["scale"], manifest["seed"], manifest["draws"]) == ("photos", 3.6, 5, 2)
    assert len(manifest["images"]) == 6 and all((folder / e["lr_file"]).is_file() for e in manifest["images"])
    assert not list(folder.glob(".*tmp*"))

    # The second call must read the stored files, not draw and degrade again.
    def refuse(*args, **kwargs):
        raise AssertionError("regenerated instead of reading the cache")

    monkeypatch.setattr(benchmark, "sample_degradation", refuse)
    monkeypatch.setattr(benchmark, "degrade_once", refuse)
    read = degraded_set(str(photo_folder), 3.6, 5, CFG, cache_dir=cache, draws=2)
    assert [s.name for s in read] == [s.name for s in written]
    for a, b in zip(written, read):
        assert a.degradation == b.degradation
        assert torch.equal(a.lr, b.lr), "the PNG round trip must be exact for 8-bit LR images"
        assert torch.equal(a.hr, b.hr)


def test_cache_is_not_reused_for_another_max_side(photo_folder, tmp_path):
    degraded_set(str(photo_folder), 3.0, 1, CFG, cache_dir=tmp_path / "c", max_side=40)
    for sample in degraded_set(str(photo_folder), 3.0, 1, CFG, cache_dir=tmp_path / "c", max_side=60):
        assert tuple(sample.lr.shape[-2:]) == lr_size(tuple(sample.hr.shape[-2:]), 3.0)


# -- the metric's crop rules on odd sizes ---------------------------------------------------------

@pytest.mark.parametrize("scale", [1.5, 2.7, 3.0, 3.6, 4.0])
def test_crop_is_the_largest_whole_lr_grid(scale):
    for side in range(7, 90, 2):  # odd sides
        cropped = crop_hr_to_lr_grid(torch.zeros(1, side, side + 1), scale)
        for got, full in zip(cropped.shape[-2:], (side, side + 1)):
            h = lr_size((got, got), scale)[0]
            assert round(h * scale) == got <= full
            assert round((h + 1) * scale) > full  # one more LR pixel would not fit


def test_evaluate_is_psnr_and_ssim_on_y_with_shave_ceil_scale(photo_folder):
    samples = degraded_set(str(photo_folder), 3.6, 0, CFG)
    rows = evaluate(bicubic_upscaler, samples)
    assert shave_for(3.6) == 4
    for row, sample in zip(rows, samples):
        sr = bicubic_upscaler(sample.lr[None], tuple(sample.hr.shape[-2:]))[0]
        assert row["psnr"] == psnr_y(sr, sample.hr, 4) and row["ssim"] == ssim_y(sr, sample.hr, 4)
        assert row["psnr"] != psnr_y(sr, sample.hr, 1)  # the authors' 1-pixel shave differs
        assert row["image"] == sample.name and row["scale"] == 3.6


# -- tables ---------------------------------------------------------------------------------------

def test_rank_marks_with_ties_and_nan():
    assert rank_marks([1.0, 3.0, 2.0]) == ["", "best", "second"]
    assert rank_marks([3.0, 3.0, 2.0, 1.0]) == ["best", "best", "second", ""]
    assert rank_marks([2.0, math.nan, 1.0]) == ["best", "", "second"]


def test_format_table_marks_best_and_second_and_prints_mean_std():
    rows = [{"method": "a", "PSNR": (30.0, 0.123), "SSIM": 0.81},
            {"method": "b", "PSNR": (31.0, 0.2), "SSIM": 0.81},
            {"method": "c", "PSNR": (29.0, 0.0), "SSIM": 0.7}]
    lines = format_table(rows, ["PSNR", "SSIM"]).splitlines()
    assert lines[0] == "| method | PSNR | SSIM |" and lines[1] == "|---|---|---|"
    assert lines[2] == "| a | _30.00 ± 0.12_ | **0.8100** |"
    assert lines[3] == "| b | **31.00 ± 0.20** | **0.8100** |"  # tie: both best
    assert lines[4] == "| c | 29.00 ± 0.00 | _0.7000_ |"
    assert "| a | _30.000 ± 0.123_ |" in format_table(rows, ["PSNR", "SSIM"], digits={"PSNR": 3})


def test_write_csv_splits_mean_std_cells(tmp_path):
    rows = [{"method": "a", "PSNR": (30.0, 0.5), "n": 3}, {"method": "b", "PSNR": (31.25, 0.0), "n": 4}]
    path = write_csv(rows, tmp_path / "t.csv")
    with open(path) as handle:
        read = list(csv.DictReader(handle))
    assert list(read[0]) == ["method", "PSNR_mean", "PSNR_std", "n"]
    assert [(r["method"], float(r["PSNR_mean"]), float(r["PSNR_std"]), int(r["n"])) for r in read] == \
           [("a", 30.0, 0.5, 3), ("b", 31.25, 0.0, 4)]


def test_mean_std_uses_the_sample_standard_deviation():
    assert mean_std([1.0, 2.0, 3.0, 4.0]) == pytest.approx((2.5, math.sqrt(5 / 3)))
    assert mean_std([7.0]) == (7.0, 0.0)


def test_paired_difference_against_hand_computation_and_scipy():
    gen = np.random.default_rng(0)
    b = gen.normal(28, 2, size=12)
    a = b + 0.15 + gen.normal(0, 0.1, size=12)
    got = paired_difference(a, b)
    d = a - b
    half = stats.t.ppf(0.975, 11) * d.std(ddof=1) / math.sqrt(12)
    assert got["mean"] == pytest.approx(d.mean()) and got["n"] == 12
    assert (got["low"], got["high"]) == pytest.approx((d.mean() - half, d.mean() + half))
    interval = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert (got["low"], got["high"]) == pytest.approx((interval.low, interval.high))
    assert got["resolved"] is True
    # a difference smaller than the noise is not resolved; nor is one sample
    noisy = paired_difference(b + gen.normal(0, 1, size=12), b)
    assert noisy["low"] < 0 < noisy["high"] and noisy["resolved"] is False
    single = paired_difference([1.0], [0.0])
    assert single["n"] == 1 and math.isnan(single["low"]) and single["resolved"] is False


# -- asbsr.lab.results --------------------------------------------------------------------------------

def synthetic_rows() -> list[dict]:
    """Two seeds of 'good' (0.2 dB above 'base' on every sample, plus noise) and 'base', and
    deterministic bicubic, on 2 sets x 2 scales x 6 images."""
    gen = np.random.default_rng(1)
    rows = []
    for set_name in ("val", "classic5"):
        for scale in (3.0, 4.0):
            for image in range(6):
                truth = 26 + gen.normal(0, 2)
                rows.append({"method": "bicubic", "seed": 0, "set": set_name, "scale": scale,
                             "image": f"i{image}", "psnr": truth - 1, "ssim": 0.6})
                for seed in (0, 1):
                    for method, offset in (("base", 0.0), ("good", 0.2)):
                        rows.append({"method": method, "seed": seed, "set": set_name, "scale": scale,
                                     "image": f"i{image}", "psnr": truth + offset + gen.normal(0, 0.01),
                                     "ssim": 0.7 + offset / 10})
    return rows


def test_table1_rows_are_mean_and_std_over_seeds():
    rows = synthetic_rows()
    table = results.table1_rows(rows, ["bicubic", "base", "good"], ["val", "classic5"], 3.0)
    assert [r["method"] for r in table] == ["bicubic", "base", "good"]
    per_seed = [np.mean([r["psnr"] for r in rows if r["method"] == "good" and r["seed"] == s
                         and r["set"] == "val" and r["scale"] == 3.0]) for s in (0, 1)]
    assert table[2]["val PSNR"] == pytest.approx((np.mean(per_seed), np.std(per_seed, ddof=1)))
    assert table[0]["val PSNR"][1] == 0.0  # one "seed" for bicubic
    assert results.table1_columns(["val", "/data/Set5"]) == ["val PSNR", "val SSIM", "Set5 PSNR", "Set5 SSIM"]
    assert "**" in format_table(table, results.table1_columns(["val", "classic5"]))


def test_paired_comparisons_and_the_ordering_verdicts():
    rows = synthetic_rows()
    first, second, keys = results.paired_rows(rows, "good", "bicubic", "psnr")
    assert len(keys) == 2 * 2 * 2 * 6  # bicubic pairs with both seeds of "good"
    comparison = results.compare(rows, "good", "base")
    assert comparison["mean"] == pytest.approx(0.2, abs=0.01) and comparison["verdict"] == results.RESOLVED
    ordering = results.table1_ordering(rows, ["bicubic", "base", "good"], best="good")
    assert ordering["status"] == "holds" and ordering["cells_won"] == ordering["cells"] == 4
    assert results.table1_ordering(rows, ["bicubic", "base", "good"], best="base")["status"] == "contradicted"
    # Table 2's claims, with "base" standing for the plain model and "good" for the full one.
    renamed = [{**r, "method": {"base": "lte", "good": "ours"}.get(r["method"], r["method"])} for r in rows]
    differences = results.table2_differences(renamed, ["lte", "ours"])
    assert differences == []  # no claim compares the plain model with the full one directly
    renamed += [{**r, "method": "implicit_only", "psnr": r["psnr"] + 0.1} for r in renamed if r["method"] == "lte"]
    differences = results.table2_differences(renamed, ["lte", "implicit_only", "ours"])
    assert [(d["a"], d["b"]) for d in differences] == [("implicit_only", "lte"), ("ours", "implicit_only")]
    assert results.table2_ordering(differences)["status"] == "holds"
    noisy = [dict(d, resolved=False) for d in differences]
    assert results.table2_ordering(noisy)["status"] == results.UNRESOLVED


def test_benchmark_degradation_is_the_one_degraded_set_draws(photo_folder):
    for sample in degraded_set(str(photo_folder), 4.0, 11, CFG):
        assert results.benchmark_degradation(photo_folder, sample.name, 4.0, 11, CFG) == sample.degradation


# -- the paper's tables ---------------------------------------------------------------------------

def test_paper_table1_is_complete_and_plausible():
    table = paper_results.TABLE1
    assert set(table) == set(paper_results.SCALES)
    for scale, rows in table.items():
        assert tuple(rows) == paper_results.TABLE1_METHODS
        for method, cells in rows.items():
            assert tuple(cells) == paper_results.SETS
            for psnr, ssim in cells.values():
                assert 20 < psnr < 40 and 0 < ssim < 1
    for method, set_name, scale in paper_results.SWAPPED:
        assert (method, set_name, scale) in paper_results.NOTES
    # spot values, as printed
    assert table[3.0]["ours"]["Set5"] == (29.5681, 0.8696)
    assert table[3.0]["bicubic"]["Urban100"] == (22.3680, 0.6059)
    assert table[3.6]["metasr"]["Set5"] == (25.8354, 0.7130)
    assert table[3.6]["metasr"]["Set14"] == (28.6290, 0.8266)
    assert table[4.0]["lte"]["BSD100"] == (25.7677, 0.6741)
    assert table[4.0]["dcls_lte"]["Set14"] == (24.2402, 0.6789)
    assert table[3.6]["liif"]["Set14"][0] == table[3.6]["lte"]["Set14"][0] == 25.9306
    assert paper_results.TABLE2["ours"] == (True, True, 29.8102, 0.8312)
    assert paper_results.TABLE2["lte"] == (False, False, 29.5949, 0.8246)


def test_paper_facts_that_design_md_states():
    table = paper_results.TABLE1
    # "Ours" is beaten in a few cells: MetaSR on Urban100 x3.6, LIIF on Set14 x3
    assert table[3.6]["metasr"]["Urban100"][0] > table[3.6]["ours"]["Urban100"][0]
    assert paper_results.ours_rank(3.0, "Set14") == 1
    assert paper_results.ours_rank(3.6, "Urban100") == 2
    # DCLS + LIIF/LTE below Bicubic in PSNR at x3 on Set5, above it in SSIM
    for method in ("dcls_liif", "dcls_lte"):
        assert table[3.0][method]["Set5"][0] < table[3.0]["bicubic"]["Set5"][0]
        assert table[3.0][method]["Set5"][1] > table[3.0]["bicubic"]["Set5"][1]
    fixed = paper_results.table1(swap_fixed=True)
    assert fixed[3.6]["metasr"]["Set5"] == (28.6290, 0.8266) and fixed[3.6]["metasr"]["Set14"] == (25.8354, 0.7130)
    assert paper_results.TABLE1[3.6]["metasr"]["Set5"] == (25.8354, 0.7130)  # the data stay as printed


def test_paper_tables_as_markdown():
    text = paper_results.table1_markdown(3.0)
    assert "| Ours | **29.5681** | **0.8696** |" in text
    assert "| LTE | _29.4247_ |" in text and "| LIIF | 29.3787 |" in text
    # As printed, MetaSR's suspicious x3.6 Set14 cell would be "best": it is flagged.
    printed = paper_results.table1_markdown(3.6)
    assert "| MetaSR † | 25.8354 | 0.7130 | **28.6290** | **0.8266** |" in printed and "swapped" in printed
    assert "| MetaSR † | **28.6290** |" not in printed
    fixed = paper_results.table1_markdown(3.6, swap_fixed=True)
    assert "| MetaSR † | 28.6290 | 0.8266 | 25.8354 | 0.7130 |" in fixed
    table2 = paper_results.table2_markdown()
    assert "**29.8102**" in table2 and "_29.6870_" in table2


def test_zoom_boxes_map_between_hr_and_lr():
    from asbsr.lab.viz.results import crop, lr_box

    # x4: HR rows 8..15 are LR rows 2..3; a box not on the grid widens to whole LR pixels
    assert lr_box((8, 4, 8, 8), (40, 40), (10, 10)) == (2, 1, 2, 2)
    assert lr_box((9, 5, 6, 6), (40, 40), (10, 10)) == (2, 1, 2, 2)
    # x3.6 on a 238-pixel side (66 LR pixels): the box stays inside the LR image
    top, left, height, width = lr_box((200, 200, 38, 38), (238, 238), (66, 66))
    assert top + height <= 66 and left + width <= 66 and top * 238 / 66 <= 200
    image = torch.arange(36.0).view(1, 6, 6)
    assert torch.equal(crop(image, (1, 2, 2, 3)), image[:, 1:3, 2:5])
    with pytest.raises(ValueError):
        crop(image, (5, 0, 2, 2))


def test_plan_takes_the_most_methods_first_then_every_seed_that_holds_them(monkeypatch):
    from asbsr.config import TABLE1_METHODS, TABLE2_METHODS, make_config
    from asbsr.lab import results

    # a zoo like a partly trained one: every method at seed 0, Table 2's four also at seeds 1, 2
    held = {(m, 0) for m in TABLE1_METHODS + TABLE2_METHODS} | {(m, s) for m in TABLE2_METHODS for s in (1, 2)}
    monkeypatch.setattr(results, "zoo_has", lambda config, m: m == "bicubic" or (m, config.seed) in held)
    config = make_config("cpu", {"eval.seeds": (0, 1, 2)})
    methods1, seeds1, note1 = results.plan(config, ["bicubic", *TABLE1_METHODS])
    assert methods1 == ["bicubic", *TABLE1_METHODS] and seeds1 == [0]
    assert "seeds [1, 2] left out" in note1
    methods2, seeds2, _ = results.plan(config, list(TABLE2_METHODS))
    assert methods2 == list(TABLE2_METHODS) and seeds2 == [0, 1, 2]
    # what is given is kept; TRAIN=True wants everything at every seed
    assert results.plan(config, list(TABLE2_METHODS), methods=["lte"], seeds=[2])[:2] == (["lte"], [2])
    assert results.plan(config, ["bicubic", "liif"], train=True)[:2] == (["bicubic", "liif"], [0, 1, 2])
    # an empty zoo: the two methods trained here in seconds, at the first seed
    monkeypatch.setattr(results, "zoo_has", lambda config, m: m == "bicubic")
    methods, seeds, note = results.plan(config, ["bicubic", *TABLE1_METHODS])
    assert methods == ["bicubic", "lte", "ours"] and seeds == [0] and "holds none" in note


def test_draw_curves_plots_each_recorded_model_and_says_when_none_has_curves():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from asbsr.lab.viz.results import draw_curves

    curve = {"points": [{"step": 250, "train_psnr": 26.0, "val_psnr": 28.0},
                        {"step": 500, "train_psnr": 26.5, "val_psnr": 28.9}],
             "bicubic": {"train_psnr": 25.0, "val_psnr": 27.0}}
    fig, ax = plt.subplots()
    draw_curves(ax, {"ours s0": {"curves": curve}, "old model": {}})
    lines = ax.get_lines()
    assert [list(line.get_ydata()) for line in lines[:2]] == [[28.0, 28.9], [26.0, 26.5]]
    assert list(lines[2].get_ydata()) == [27.0, 27.0]  # bicubic's level
    assert len(lines) == 3  # the entry without curves draws nothing
    fig2, empty = plt.subplots()
    draw_curves(empty, {"old model": {}})
    assert not empty.get_lines() and "no curves" in empty.texts[0].get_text()
    plt.close(fig), plt.close(fig2)


def test_a_cache_made_before_a_photo_was_added_is_not_reused(photo_folder, tmp_path):
    # The cache of a set that has since grown would score the old photos only.
    cache = tmp_path / "cache"
    before = degraded_set(str(photo_folder), 3.0, 5, CFG, cache_dir=cache)
    save_image(smooth_image(40, 40, 9), photo_folder / "added.png")
    after = degraded_set(str(photo_folder), 3.0, 5, CFG, cache_dir=cache)
    assert len(after) == len(before) + 1 and "added" in {s.name for s in after}
    assert len(list(cache.glob("photos-x3-seed5-d1-*"))) == 2
