"""The mixture's token targets under max_epochs caps (textbooklm.lm.mixture.allocate)."""

from __future__ import annotations

import math

import pytest

from textbooklm.lm.mixture import allocate


def test_no_cap_binding_gives_the_weights_shares_exactly():
    budgets = allocate([0.95, 0.05], [1_000_000, 10_000], [4, 4], 100_000)
    assert [b.target for b in budgets] == [0.95 * 100_000, 0.05 * 100_000]
    assert not any(b.capped for b in budgets)


def test_a_capped_source_frees_tokens_that_can_push_another_over_its_cap():
    # C asks 50 epochs and is capped at 4 (400 tokens); its freed tokens raise B past its own cap (cascade).
    budgets = allocate([1, 1, 2], [100_000, 2_000, 100], [4, 4, 4], 20_000)
    a, b, c = budgets
    assert c.capped and c.at_cap and c.target == 400 and c.asked == pytest.approx(10_000)
    # B asked 5,000 (2.5 epochs: not capped); C's freed tokens would push it to 9,800: filled to its cap.
    assert not b.capped and b.at_cap and b.target == 8_000
    assert not a.at_cap and a.target == pytest.approx(20_000 - 8_000 - 400)
    assert sum(x.target for x in budgets) == pytest.approx(20_000)


def test_every_source_capped_shrinks_the_total_and_no_cap_means_inf():
    budgets = allocate([1, 1], [100, 200], [2, 2], 10_000)
    assert all(b.capped for b in budgets) and [b.target for b in budgets] == [200, 400]
    free = allocate([1, 1], [100, 200], [math.inf, math.inf], 10_000)
    assert [b.target for b in free] == [5_000, 5_000] and not any(b.capped for b in free)
