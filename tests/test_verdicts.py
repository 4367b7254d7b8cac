"""Every outcome of every verdict: the sentence a notebook prints follows its numbers."""

from __future__ import annotations

from asbsr.lab import verdicts


def test_compare_names_the_better_one_or_a_tie():
    assert verdicts.compare("Ours", 30.5, "LTE", 30.2) == "Ours (30.50 dB) is better than LTE (30.20 dB) by 0.30 dB."
    assert verdicts.compare("Ours", 30.1, "LTE", 30.2) == "Ours (30.10 dB) is worse than LTE (30.20 dB) by 0.10 dB."
    assert "are level" in verdicts.compare("Ours", 30.21, "LTE", 30.2, tie=0.02)
    assert "is better" in verdicts.compare("L1 of M", 0.1, "L1 of the mean", 0.2, unit="", higher_is_better=False)


def test_paired_says_whether_the_interval_resolves_the_difference():
    assert verdicts.paired("a", "b", 0.2, 0.1, 0.3, 9).endswith("a is better, and the interval excludes zero.")
    assert verdicts.paired("a", "b", -0.2, -0.3, -0.1, 9).endswith("a is worse, and the interval excludes zero.")
    sentence = verdicts.paired("a", "b", 0.05, -0.02, 0.12, 9)
    assert sentence == ("a − b: +0.05 dB (95% CI [-0.02, +0.12] over 9 samples): the interval includes "
                        "zero, so these samples do not tell the two apart.")


def test_against_paper_places_the_papers_value():
    assert "lies inside" in verdicts.against_paper("cycle", 0.05, -0.02, 0.13, 0.12)
    assert "lies outside" in verdicts.against_paper("cycle", -0.03, -0.07, 0.0, 0.12)


def test_all_above_names_what_falls_short():
    assert verdicts.all_above("gain", [0.5, 1.0], 0.0, ["x2", "x3"]) == "gain: every value is above 0.00 dB (lowest 0.50 dB)."
    assert verdicts.all_above("gain", [0.5, -1.0], 0.0, ["x2", "x3"]) == "gain: below 0.00 dB at x3 (-1.00 dB)."


def test_trend_in_words():
    assert verdicts.trend("width", -0.9, "the scale") == "width falls with the scale (Spearman ρ -0.90)."
    assert verdicts.trend("width", 0.8, "the scale").startswith("width rises with")
    assert "loosely rises" in verdicts.trend("width", 0.4, "the scale")
    assert "loosely falls" in verdicts.trend("width", -0.4, "the scale")
    assert verdicts.trend("width", 0.1, "the scale") == "width does not follow the scale (Spearman ρ +0.10)."
