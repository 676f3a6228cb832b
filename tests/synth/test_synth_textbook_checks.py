"""Textbook replies cut off at max_tokens (salvaged to their complete sections or rejected) and replies
that echo the prompt."""

from __future__ import annotations

from textbooklm.synth.config import TextbooksConfig
from textbooklm.synth.textbook_checks import is_cut_off, prompt_echo, salvage_cut_off
from textbooklm.synth.textbooks_stage import screen_reply

INTRO = "# Lists\n\nA list holds values in order. You can add to it and read from it.\n"
BLOCK = "```python\nvalues = [3, 1, 2]\nprint(sorted(values))\n```\n"
PROMPT = ("Write a short textbook section about \"sorting lists\" for college students, in the style of a "
          "hands-on tutorial. Include a Python code example that runs on its own.")


def test_a_reply_that_stopped_is_never_cut_off():
    assert not is_cut_off(INTRO + "And then the list is", "stop")
    assert not is_cut_off(INTRO + "And then the list is", None)


def test_cut_off_mid_sentence_and_mid_block():
    assert is_cut_off(INTRO + "\nSorting a list puts its values in", "length")
    assert is_cut_off(INTRO + "\n```python\nvalues = [3, 1", "length")  # open fence
    assert not is_cut_off(INTRO + "\n" + BLOCK, "length")  # ended exactly at a closed block
    assert not is_cut_off(INTRO, "length")  # ended at a full stop


def test_salvage_keeps_complete_sections_only():
    text = INTRO + "\n" + BLOCK + "\nSorting a list puts its values in"
    assert salvage_cut_off(text) == INTRO + "\n" + BLOCK
    open_block = INTRO + "\nNext, a longer example.\n\n```python\nfor v in values:\n    print(v"
    assert salvage_cut_off(open_block) == INTRO + "\nNext, a longer example.\n"
    assert salvage_cut_off("Sorting a list puts its values in") is None
    assert salvage_cut_off("```python\nx = 1") is None


def test_prompt_echo_share_and_opening():
    assert prompt_echo(PROMPT + "\n\n" + INTRO, PROMPT) == 1.0  # opens with the prompt
    assert prompt_echo(INTRO + BLOCK, PROMPT) == 0.0
    half = INTRO + " ".join(PROMPT.split()[8:20])
    assert 0.1 < prompt_echo(half, PROMPT) < 1.0
    assert prompt_echo("short", PROMPT) == 0.0


def test_screen_reply_salvages_rejects_and_notes():
    cfg = TextbooksConfig(min_chars=40)
    text, reason, _, notes = screen_reply(INTRO + "\n" + BLOCK + "\nSorting a list puts", PROMPT, "length", cfg)
    assert reason is None and text == INTRO + "\n" + BLOCK and notes["cut_off"]["salvaged_chars"] == len(text)
    _, reason, detail, _ = screen_reply("Sorting a list puts its values in", PROMPT, "length", cfg)
    assert reason == "cut-off" and "at least 40 needed" in detail
    _, reason, detail, notes = screen_reply(PROMPT + "\n" + INTRO, PROMPT, "stop", cfg)
    assert reason == "prompt-echo" and notes["prompt_echo"] == 1.0
    kept = screen_reply(INTRO + "\nSorting a list puts", PROMPT, "length", TextbooksConfig(drop_cut_off=False,
                                                                                            min_chars=10))
    assert kept[1] is None and kept[0].endswith("puts")


# A block that opens a new ```python fence inside an open one: the code-block reader (and so the sandbox) sees
# one block running on past it, which an opening-fence-closes-too count took for a closed block.
NESTED = ("# Loops\n\nA loop repeats its body.\n\n```python\nfor i in range(3):\n    print(i)\n```python\n"
          "total = 0\n\nEach pass adds one.\n\nThe end of the story is here.\n\nAnd then the loop")


def test_a_salvaged_cut_off_never_ends_inside_a_fence():
    from textbooklm.codeblocks import extract_blocks

    for text in (NESTED, INTRO + "\n" + BLOCK + "\nMore.\n\n~~~python\nx = 1\n```\n\nStill code.\n\nCut"):
        assert is_cut_off(text, "length")
        salvaged = salvage_cut_off(text)
        assert salvaged is None or all(b.closed for b in extract_blocks(salvaged)), salvaged
    assert salvage_cut_off(NESTED) == "# Loops\n\nA loop repeats its body.\n"


def test_only_blocks_that_execute_their_code_count_as_run():
    from textbooklm.synth.textbook_checks import unexercised

    stubs = "def load(path):\n    return parse_file(path)\n\n\nclass Report:\n    pass\n"
    assert "nothing calls" in unexercised(stubs)
    assert unexercised(stubs, ["report = Report()\nprint(report)\n"]) == ""  # a later block uses it
    assert unexercised("def f(x):\n    return 2 * x\n\nprint(f(3))\n") == ""
    assert unexercised("def f(x):\n    return 2 * x\n\nassert f(2) == 4\n") == ""
    assert unexercised("def f(x):\n    return x\n\nif __name__ == '__main__':\n    f(1)\n") == ""
    assert unexercised("import math\nx = 5\n") == "executes nothing (no call, assert or print)"
    assert unexercised("values = [3, 1]\ntotal = sum(values)\n") == ""
