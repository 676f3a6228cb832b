"""Error bars and verdicts: a clear difference is called, noise is not, and the papers' direction is checked."""

from __future__ import annotations

import math

from textbooklm.ablate.stats import Cell, compare, welch_p


def test_cell_mean_and_sample_std():
    c = Cell([1.0, 2.0, 3.0])
    assert c.mean == 2.0 and math.isclose(c.std, 1.0)
    assert math.isnan(Cell([1.0]).std)


def test_welch_matches_a_hand_computed_case():
    # a = [1,2,3], b = [4,5,6]: t = 3 / sqrt(1/3 + 1/3) = 3.674, df = 4 -> two-sided p = 0.0213
    assert math.isclose(welch_p([1, 2, 3], [4, 5, 6]), 0.02131, rel_tol=1e-3)
    assert welch_p([0, 0, 0], [0, 0, 0]) == 1.0
    assert welch_p([0, 0, 0], [1, 1, 1]) == 0.0
    assert math.isnan(welch_p([1], [2, 3]))


def test_lower_loss_outside_the_noise_is_better_as_the_papers():
    c = compare("A -> B", "validation loss (shared)", Cell([5.0, 5.1, 5.05]), Cell([4.0, 4.1, 4.05]),
                higher_is_better=False, paper="better")
    assert c.effect == "better" and c.p < 0.05
    assert "same direction as the papers" in c.verdict


def test_a_worse_step_is_called_opposite_to_the_papers():
    c = compare("B -> C", "humaneval pass@1", Cell([10.0, 11.0, 10.5]), Cell([2.0, 3.0, 2.5]),
                higher_is_better=True, paper="better")
    assert c.effect == "worse" and "OPPOSITE" in c.verdict


def test_overlapping_seeds_are_within_the_noise():
    c = compare("A -> B", "humaneval canonical NLL/token", Cell([4.0, 4.5, 5.0]), Cell([4.2, 4.6, 4.9]),
                higher_is_better=False, paper="better")
    assert c.effect == "within the noise" and "cannot tell" in c.verdict


def test_all_equal_values_are_no_difference():
    c = compare("C -> D", "humaneval pass@1", Cell([0.0, 0.0, 0.0]), Cell([0.0, 0.0, 0.0]), True, "better")
    assert c.effect == "no difference"
