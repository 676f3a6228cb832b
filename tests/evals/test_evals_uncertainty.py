"""Error bars and the paired test: pass@k standard error against a hand computation, NLL bootstrap
intervals, paired comparisons that find a planted difference (and none where there is none), and the
sentence a zero pass@k gets."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from textbooklm.evals.outcomes import describe_outcomes, failure_kind, zero_sentence
from textbooklm.evals.passk import mean_pass_at_k, pass_at_k_stderr
from textbooklm.evals.uncertainty import bootstrap_ratio_interval, mean_stderr, paired_comparison


def test_pass_at_k_stderr_is_lm_eval_harness_mean_stderr_by_hand():
    # Three problems, 4 samples each, passing 1, 0 and 4: pass@1 per problem 0.25, 0, 1.
    counts = [(4, 1), (4, 0), (4, 4)]
    mean = (0.25 + 0 + 1) / 3
    sample_var = ((0.25 - mean) ** 2 + (0 - mean) ** 2 + (1 - mean) ** 2) / (3 - 1)
    assert pass_at_k_stderr(counts, (1,))["pass@1"] == pytest.approx(math.sqrt(sample_var) / math.sqrt(3))
    # pass@2 per problem: 1 - C(3,2)/C(4,2) = 0.5, 0, 1.
    mean2 = 0.5
    var2 = ((0.5 - mean2) ** 2 + (0 - mean2) ** 2 + (1 - mean2) ** 2) / 2
    got = pass_at_k_stderr(counts, (1, 2, 10))
    assert got["pass@2"] == pytest.approx(math.sqrt(var2 / 3)) and "pass@10" not in got
    assert mean_pass_at_k(counts, (2,))["pass@2"] == pytest.approx(mean2)
    assert math.isnan(mean_stderr([0.5])) and mean_stderr([0.0, 0.0, 0.0]) == 0.0


def test_bootstrap_interval_covers_the_ratio_and_narrows_with_more_problems():
    rng = np.random.default_rng(0)
    tokens = rng.integers(20, 200, size=400).astype(float)
    nats = tokens * rng.normal(2.0, 0.5, size=400)
    lo, hi = bootstrap_ratio_interval(nats, tokens)
    value = nats.sum() / tokens.sum()
    assert lo < value < hi and hi - lo < 0.2
    lo40, hi40 = bootstrap_ratio_interval(nats[:40], tokens[:40])
    assert hi40 - lo40 > hi - lo  # fewer problems, wider interval
    assert all(math.isnan(x) for x in bootstrap_ratio_interval([1.0], [2.0]))


def test_paired_comparison_finds_a_planted_improvement_and_calls_noise_noise():
    rng = np.random.default_rng(1)
    tokens = rng.integers(20, 100, size=164).astype(float)
    difficulty = rng.normal(3.0, 1.0, size=164)  # problems differ a lot; the pairing cancels it
    before = tokens * difficulty
    after = tokens * (difficulty - 0.1 + rng.normal(0, 0.05, size=164))  # planted: 0.1 nats/token lower
    c = paired_comparison("pretrain -> finetune", "humaneval canonical NLL/token", (before, tokens),
                          (after, tokens), higher_is_better=False)
    assert c.effect == "better" and c.p < 0.01 and c.interval[0] < c.diff < c.interval[1] < 0
    assert c.diff == pytest.approx(-0.1, abs=0.02)
    assert c.verdict.startswith("pretrain -> finetune, humaneval canonical NLL/token: ")
    assert "paired over 164 problems" in c.verdict and c.verdict.endswith(": better")
    worse = paired_comparison("a -> b", "m", (after, tokens), (before, tokens), higher_is_better=False)
    assert worse.effect == "worse"
    # No planted difference: two noisy copies of the same model. The test must call ~5% of such pairs
    # "better"/"worse" (its false-positive rate is alpha), not more.
    called = 0
    for replicate in range(100):
        r = np.random.default_rng(100 + replicate)
        one, two = (tokens * (difficulty + r.normal(0, 0.05, size=164)) for _ in range(2))
        got = paired_comparison("a -> b", "m", (one, tokens), (two, tokens), False, resamples=500, seed=replicate)
        called += got.effect != "within the noise"
    assert called <= 10


def test_paired_comparison_of_pass_rates_and_of_identical_results():
    # 0/1 outcomes on 100 problems: the second model solves 15 more and loses none (McNemar's b=15, c=0).
    a = np.zeros(100)
    b = a.copy()
    b[:15] = 100.0
    c = paired_comparison("base -> tuned", "humaneval pass@1", (a, np.ones(100)), (b, np.ones(100)), True)
    assert c.effect == "better" and c.diff == pytest.approx(15.0) and c.p < 0.001
    zero = paired_comparison("base -> tuned", "humaneval pass@1", (a, np.ones(100)), (a, np.ones(100)), True)
    assert zero.effect == "no difference" and zero.diff == 0 and zero.p == 1.0
    with pytest.raises(ValueError, match="same problems"):
        paired_comparison("x", "m", (a, np.ones(100)), (a[:50], np.ones(50)), True)


def test_a_zero_says_what_the_samples_were():
    samples = [{"completion": "\n\n"}] * 8 + [{"completion": "    return x\n"}, {"completion": "    foo()\n"}]
    verdicts = [{"passed": False, "status": "failed", "error": "SyntaxError: bad"}] * 8 + [
        {"passed": False, "status": "failed", "error": "AssertionError at test line 3: assert c(1) == 2"},
        {"passed": False, "status": "failed", "error": "NameError: name 'foo' is not defined at program line 2"}]
    got = describe_outcomes(samples, verdicts, pass_at_1=0.0)
    assert got["empty"] == 8 and got["empty_share"] == 0.8
    assert got["failure_kinds"] == {"AssertionError": 1, "NameError": 1}
    assert got["zero_note"] == ("pass@1 = 0: 80% of 10 samples were empty; the rest failed their tests "
                                "(50% AssertionError, 50% NameError)")
    assert "zero_note" not in describe_outcomes(samples, verdicts, pass_at_1=0.1)
    assert zero_sentence(5, 5, Counter()) == "pass@1 = 0: 100% of 5 samples were empty (whitespace only)"
    assert zero_sentence(4, 0, Counter({"timeout": 4})).startswith("pass@1 = 0: none of 4 samples was empty")
    assert failure_kind("timeout", "wall-clock limit of 5 s exceeded") == "timeout"
