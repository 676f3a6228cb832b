"""Seed sampler: deterministic under a seed, covering, re-weighting; topic trees; the function-name pool."""

from __future__ import annotations

import keyword

import pytest

from textbooklm.synth.names import KINDS, generated_names, name_pool
from textbooklm.synth.seeds import Coverage, SeedSampler, load_topics, load_words, parse_topic_tree

AUDIENCES = ["young learners", "high school students", "college students", "professional developers"]
STYLES = ["textbook chapter", "tutorial", "worked examples", "questions and answers"]


def sampler(seed: int = 0, reweight: float = 1.0, **kw) -> SeedSampler:
    return SeedSampler(load_topics(None), AUDIENCES, STYLES, load_words(None), seed=seed, reweight=reweight, **kw)


def test_same_seed_same_draws_and_other_seed_other_draws():
    a = [s.to_json() for s in sampler(7).sample(20, round_index=3)]
    b = [s.to_json() for s in sampler(7).sample(20, round_index=3)]
    c = [s.to_json() for s in sampler(8).sample(20, round_index=3)]
    d = [s.to_json() for s in sampler(7).sample(20, round_index=4)]
    assert a == b
    assert a != c and a != d
    assert [s["index"] for s in a] == list(range(20))
    assert all(len(s["words"]) == 2 and len(set(s["words"])) == 2 for s in a)


def test_reweighting_covers_more_topics_than_uniform_sampling():
    topics = load_topics(None)
    n = len(topics)
    uniform = {s.topic for s in sampler(1, reweight=0).sample(n)}
    balanced = {s.topic for s in sampler(1, reweight=8).sample(n)}
    assert len(balanced) >= 0.95 * n, f"{len(balanced)} of {n} topics covered"
    assert len(balanced) > len(uniform)
    # Small fields are covered in as many draws as they have values.
    assert {s.audience for s in sampler(2, reweight=8).sample(4)} == set(AUDIENCES)


def test_coverage_from_earlier_rounds_pulls_toward_unused_seeds():
    topics = load_topics(None)
    cov = Coverage()
    rare = topics[:3]
    for t in topics[3:]:
        for _ in range(20):
            cov.add({"topic": t, "audience": AUDIENCES[0], "style": STYLES[0], "words": []})
    drawn = [s.topic for s in sampler(3, reweight=2).sample(30, round_index=1, coverage=cov)]
    assert sum(t in rare for t in drawn) >= 10, drawn  # uniform sampling would give ~1
    assert sum(s.audience == AUDIENCES[0] for s in sampler(3, reweight=2).sample(30, 1, cov)) <= 3
    assert sum(cov.counts["topic"].values()) == 20 * (len(topics) - 3), "sampling must not modify the coverage"


def test_excerpts_are_used_at_the_configured_rate_and_recorded():
    excerpts = [{"id": f"e{i}", "path": f"m{i}.py", "text": f"def f{i}():\n    return {i}\n"} for i in range(5)]
    seeds = sampler(4, excerpts=excerpts, excerpt_fraction=0.5).sample(200)
    used = [s for s in seeds if s.excerpt]
    assert 70 <= len(used) <= 130
    assert all(s.excerpt in excerpts for s in used)
    assert not any(s.excerpt for s in sampler(4, excerpt_fraction=0.5).sample(50)), "no excerpts without a corpus"


def test_topic_tree_forms(tmp_path):
    tree = "# comment\nBasics\n  Variables\n  Loops\n    For loops\n    While loops\nSorting > Merge sort\nRecursion\n"
    assert parse_topic_tree(tree) == [
        "Basics > Variables", "Basics > Loops > For loops", "Basics > Loops > While loops", "Sorting > Merge sort",
        "Recursion",
    ]
    flat = tmp_path / "topics.txt"
    flat.write_text("photosynthesis\nthe water cycle\n\nphotosynthesis\n")
    assert load_topics(flat) == ["photosynthesis", "the water cycle"]
    with pytest.raises(ValueError, match="tabs"):
        parse_topic_tree("A\n\tB\n")
    with pytest.raises(ValueError, match="no topics"):
        parse_topic_tree("# only a comment\n", where="x.txt")
    with pytest.raises(ValueError, match="no such topics file"):
        load_topics(tmp_path / "missing.txt")
    shipped = load_topics(None)
    assert len(shipped) >= 80 and len(set(shipped)) == len(shipped)


def test_name_pool_is_deterministic_unique_valid_and_spread(tmp_path):
    pool = generated_names(0)
    names = [f.name for f in pool]
    assert len(names) == len(set(names)) >= 300
    assert all(n.isidentifier() and not keyword.iskeyword(n) for n in names)
    assert [f.name for f in generated_names(0)] == names
    assert [f.name for f in generated_names(1)] != names
    first = pool[: len(KINDS) + 1]
    assert {f.kind for f in first} == {*KINDS, "classic"}, "every prefix covers every data kind"

    user = tmp_path / "names.txt"
    user.write_text("# mine\nleap_year(year: int)\ncount_vowels\n")
    mine = name_pool(5, user)
    assert [f.signature for f in mine[:2]] == ["leap_year(year: int)", "count_vowels()"]
    assert len({f.name for f in mine}) == 5
    user.write_text("not a name!\n")
    with pytest.raises(ValueError, match="entry 1"):
        name_pool(3, user)
    with pytest.raises(ValueError, match="names_file"):
        name_pool(100_000)


def test_weighted_picker_draws_in_proportion_and_never_a_zero_weight():
    import random

    from textbooklm.synth.seeds import WeightedPicker

    weights = [0.0, 1.0, 3.0, 0.0, 6.0, 0.0]
    picker = WeightedPicker(weights)
    rng = random.Random(1)
    counts = [0] * len(weights)
    for _ in range(20_000):
        counts[picker.draw(rng.random())] += 1
    assert counts[0] == counts[3] == counts[5] == 0
    assert [round(c / 20_000, 2) for c in (counts[1], counts[2], counts[4])] == [0.1, 0.3, 0.6]
    picker.set(4, 0.0)
    picker.set(0, 4.0)
    drawn = {picker.draw(rng.random()) for _ in range(2_000)}
    assert drawn == {0, 1, 2} and abs(picker.total() - 8.0) < 1e-9


def test_a_seed_costs_the_same_with_20k_topics_as_with_20():
    """Operation count, not time: the picker touches O(log n) nodes per draw."""
    import random

    from textbooklm.synth.seeds import WeightedPicker

    class Counting(list):
        reads = 0

        def __getitem__(self, i):
            Counting.reads += 1
            return super().__getitem__(i)

    reads = {}
    for n in (20, 20_000):
        picker = WeightedPicker([1.0] * n)
        picker.tree = Counting(picker.tree)
        Counting.reads = 0
        rng = random.Random(0)
        for _ in range(100):
            picker.set(picker.draw(rng.random()), 0.5)
        reads[n] = Counting.reads / 100
    assert reads[20_000] < 4 * reads[20], reads
