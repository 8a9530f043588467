"""The promotion gate's statistics."""

from __future__ import annotations

import pytest

from agent.loop.stats import compare, mcnemar_exact, paired_bootstrap, wilson_interval


@pytest.mark.parametrize("b, c, p", [(0, 0, 1.0), (5, 0, 0.0625), (6, 0, 0.03125), (10, 2, 0.0386), (7, 7, 1.0)])
def test_mcnemar_exact_known_values(b, c, p):
    assert mcnemar_exact(b, c) == pytest.approx(p, abs=1e-4)
    assert mcnemar_exact(c, b) == pytest.approx(p, abs=1e-4)  # symmetric


def test_bootstrap_interval_contains_the_mean_and_excludes_zero_for_a_clear_gain():
    cand = [1.0] * 15 + [0.0] * 5
    inc = [0.0] * 10 + [1.0] * 5 + [0.0] * 5
    mean, lo, hi = paired_bootstrap(cand, inc, samples=2000, seed=1)
    assert mean == pytest.approx(0.5) and lo <= mean <= hi and lo > 0


def test_bootstrap_is_seeded_and_rejects_unpaired_input():
    a, b = [1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0]
    assert paired_bootstrap(a, b, seed=3) == paired_bootstrap(a, b, seed=3)
    with pytest.raises(ValueError):
        paired_bootstrap([1.0], [1.0, 0.0])


def test_compare_counts_wins_and_losses():
    ev = compare([True, True, False, True], [False, True, True, True], samples=200)
    assert (ev["wins"], ev["losses"], ev["n"]) == (1, 1, 4) and ev["delta"] == 0.0 and ev["p_value"] == 1.0


def test_wilson_interval_is_inside_zero_one():
    assert wilson_interval(0, 5)[0] == 0.0 and wilson_interval(5, 5)[1] == pytest.approx(1.0)
    lo, hi = wilson_interval(25, 100)
    assert 0.17 < lo < 0.18 and 0.34 < hi < 0.35
