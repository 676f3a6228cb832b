"""Reply parsing on messy judge output, template loading and head cutting."""

import pytest

from textbooklm.quality.config import LLMJudgeConfig
from textbooklm.quality.prompts import cut_head, load_template, parse_reply, score_from_probs


@pytest.mark.parametrize(
    "reply,score,reason",
    [
        ("The code is clear.\nEducational score: 4", 0.8, None),
        ("Justification... **Educational score: 3**", 0.6, None),
        ('Format: "Educational score: <total points>".\nIt has docs.\nEducational score: 2', 0.4, None),
        ("educational score = 5 points", 1.0, None),
        ("  3  ", 0.6, None),
        ("4/5", 0.8, None),
        ("Educational score: 2.5", 0.5, None),
        ("I think this file is quite useful for students.", None, "no-score"),
        ("", None, "no-score"),
        ("Educational score: 7", None, "out-of-range: 7"),
        ("Educational score: -1", None, "out-of-range: -1"),
        ("There are 12 functions and 3 classes.", None, "no-score"),
    ],
)
def test_parse_grade(reply, score, reason):
    parsed = parse_reply(reply, "0-5")
    assert parsed.reason == reason
    assert parsed.score == pytest.approx(score) if score is not None else parsed.score is None


@pytest.mark.parametrize(
    "reply,score,reason",
    [
        ("high", 1.0, None),
        ("Low.", 0.0, None),
        ("The educational value of this file is HIGH because it explains each step.", 1.0, None),
        ("High - although some parts are low level.", 1.0, None),
        ("It mixes high-level and low-level ideas.", None, "ambiguous: high and low"),
        ("medium", None, "no-score"),
        ("highly educational", None, "no-score"),  # 'highly' is not the label
    ],
)
def test_parse_high_low(reply, score, reason):
    parsed = parse_reply(reply, "high-low")
    assert (parsed.score, parsed.reason) == (score, reason)


def test_expected_value_over_label_probabilities():
    assert score_from_probs([0.0, 0.0, 0.0, 0.5, 0.5, 0.0], "0-5") == pytest.approx((0.7, 3.5))
    assert score_from_probs([0.8, 0.2], "high-low") == pytest.approx((0.8, 0.8))


def test_cut_head_keeps_the_head():
    text = "\n".join(f"x{i} = {i}" for i in range(100))
    head, cut = cut_head(text, 20)
    assert cut and text.startswith(head) and len(head) < len(text)
    assert head == "".join(f"x{i} = {i}\n" for i in range(5))  # 4 tokens a line: "x0", "=", "0", newline
    assert cut_head("a = 1", 20) == ("a = 1", False)
    ends = lambda s: [i + 1 for i in range(len(s))]  # noqa: E731 - a one-character-per-token tokenizer
    assert cut_head("abcdef", 3, ends) == ("abc", True)


def test_templates(tmp_path):
    phi1 = load_template(LLMJudgeConfig(prompt="phi1"))
    assert "student whose goal is to learn basic coding concepts" in phi1.text and phi1.scale == "high-low"
    edu = load_template(LLMJudgeConfig(prompt="fineweb-edu"))
    assert edu.scale == "0-5" and "Educational score" in edu.text
    assert "{code}" not in edu.render("def f(): return {1: 2}", for_choices=True)
    assert "def f(): return {1: 2}" in edu.render("def f(): return {1: 2}", for_choices=False)
    bad = tmp_path / "t.txt"
    bad.write_text("no placeholder")
    with pytest.raises(ValueError, match="no \\{code\\} placeholder"):
        load_template(LLMJudgeConfig(prompt=str(bad), scale="0-5"))
    with pytest.raises(ValueError, match="set scale"):
        LLMJudgeConfig(prompt=str(bad))
    with pytest.raises(ValueError, match="cannot read template"):
        load_template(LLMJudgeConfig(prompt=str(tmp_path / "missing.txt"), scale="0-5"))
