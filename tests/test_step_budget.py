"""asbsr.lab.step_budget: the step counts that scripts/gpu_train.sh trains within its time budget,
planned from given training rates (no clock involved)."""

from __future__ import annotations

import json

import pytest

from asbsr.lab.step_budget import main, parse_rates, plan_steps

PRESET_STEPS = {1: 1000, 2: 3000}  # the gpu preset's


def test_steps_that_fit_are_the_presets():
    # 1000 / 20 + 3000 / 10 = 350 s of steps in a 600-s budget
    assert plan_steps(PRESET_STEPS, {1: 20.0, 2: 10.0}, budget_s=600, unit=250) == PRESET_STEPS


def test_steps_that_fit_exactly_are_not_cut():
    # 1000 / 10 + 3000 / 15 = 300 s of steps in a 300-s budget
    assert plan_steps(PRESET_STEPS, {1: 10.0, 2: 15.0}, budget_s=300, unit=250) == PRESET_STEPS


def test_slow_rates_cut_both_stages_by_one_factor_to_multiples_of_the_unit():
    # 1000 / 5 + 3000 / 5 = 800 s of steps in a 300-s budget: factor 3/8, so 375 and 1125
    # steps, rounded down to multiples of 250
    assert plan_steps(PRESET_STEPS, {1: 5.0, 2: 5.0}, budget_s=300, unit=250) == {1: 250, 2: 1000}


def test_a_cut_below_one_unit_keeps_one_unit():
    # 1000 / 1 + 3000 / 1 = 4000 s of steps in a 100-s budget: factor 1/40, so 25 and 75 steps
    assert plan_steps(PRESET_STEPS, {1: 1.0, 2: 1.0}, budget_s=100, unit=250) == {1: 250, 2: 250}


@pytest.mark.parametrize(("rates", "message"), [
    ({1: 10.0}, "no training rate for stage 2"),
    ({1: 10.0, 2: 0.0}, "rate of stage 2 must be > 0"),
    ({1: -1.0, 2: 10.0}, "rate of stage 1 must be > 0"),
    ({1: float("nan"), 2: 10.0}, "rate of stage 1 must be > 0"),
])
def test_missing_or_non_positive_rates_are_refused(rates, message):
    with pytest.raises(ValueError, match=message):
        plan_steps(PRESET_STEPS, rates, budget_s=300, unit=250)


def test_a_unit_below_one_step_is_refused():
    with pytest.raises(ValueError, match="unit must be >= 1"):
        plan_steps(PRESET_STEPS, {1: 1.0, 2: 1.0}, budget_s=100, unit=0)


def test_rates_are_read_as_stage_equals_it_per_s():
    assert parse_rates("1=2.5,2=1") == {1: 2.5, 2: 1.0}
    for text in ("", "1=2.5;2=1", "1=fast,2=1", "1=2=3"):
        with pytest.raises(ValueError, match="like 1=2.5,2=1.0"):
            parse_rates(text)


def test_main_prints_the_overrides_and_explains_them(capsys):
    # the smoke preset's 30 + 60 steps at 20 / 12 it/s take 6.5 s; 4 s -> factor 8/13, so
    # 18.5 and 36.9 steps, rounded down to multiples of 10 and at least 10
    assert main(["--preset", "smoke", "--budget", "4", "--unit", "10", "--rates", "1=20,2=12"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == ["stage1.steps=10", "stage2.steps=30"]
    assert "preset smoke: 30 + 60 steps at 20.0 / 12.0 it/s = 6 s of steps; budget 4 s -> factor 0.615" in err


def test_main_reads_the_rates_of_the_preset_from_perf_json(tmp_path, capsys):
    perf = tmp_path / "perf_train.json"
    perf.write_text(json.dumps({"training": [
        {"size": "cpu", "stage": 1, "it_per_s": 0.001}, {"size": "cpu", "stage": 2, "it_per_s": 0.001},
        {"size": "smoke", "stage": 1, "it_per_s": 100.0}, {"size": "smoke", "stage": 2, "it_per_s": 100.0}]}))
    assert main(["--preset", "smoke", "--budget", "4", "--unit", "10", "--rates-file", str(perf)]) == 0
    out, err = capsys.readouterr()
    assert out == "" and "factor 1.000" in err  # 0.9 s of steps fit: no overrides


def test_main_without_rates_prints_no_overrides_and_says_why(tmp_path, capsys):
    missing = str(tmp_path / "perf_train.json")
    assert main(["--preset", "smoke", "--budget", "4", "--unit", "10", "--rates-file", missing]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "the preset's step counts are used" in err
    assert main(["--preset", "smoke", "--budget", "4", "--unit", "10", "--rates", "1=20"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "no training rate for stage 2" in err
