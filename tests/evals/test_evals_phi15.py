"""phi-1.5 evaluations: benchmark loaders on self-written fixtures in the standard formats,
multiple-choice scoring arithmetic, GSM8K-through-code in the real sandbox, perplexity, HFScorer."""

import json
import math
from pathlib import Path

import pytest

from textbooklm.evals.choice import evaluate_choices
from textbooklm.evals.choice_tasks import TaskFormatError, load_choice_task
from textbooklm.evals.gsm8k import load_gsm8k, reference_answer
from textbooklm.evals.perplexity import chunks, perplexity
from textbooklm.evals.scoring import Score


def jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


FIXTURES = {
    "arc": [
        {"id": "a1", "question": {"stem": "Which is a metal?", "choices": [
            {"label": "A", "text": "wood"}, {"label": "B", "text": "iron"}]}, "answerKey": "B"},
        {"id": "a2", "question": "What melts ice?", "choices": {"label": ["1", "2"], "text": ["heat", "cold"]},
         "answerKey": "1"},
    ],
    "openbookqa": [{"id": "o1", "question_stem": "The sun is a", "choices": {"label": ["A", "B"],
                    "text": ["star", "planet"]}, "answerKey": "A"}],
    "piqa": [{"goal": "Open a jar", "sol1": "twist the lid", "sol2": "eat the lid", "label": 0}],
    "hellaswag": [{"ind": 7, "activity_label": "Cooking", "ctx_a": "A man cracks eggs.", "ctx_b": "he",
                   "endings": ["whisks them [title] well.", "throws the pan."], "label": 0}],
    "winogrande": [{"qID": "w1", "sentence": "The cup fell off the table because _ was slippery.",
                    "option1": "the cup", "option2": "the table", "answer": "1"}],
    "boolq": [{"question": "is water wet", "passage": "Water is a liquid.", "answer": True}],
    "siqa": [{"context": "Kai was hungry.", "question": "What will Kai do?", "answerA": "eat",
              "answerB": "sleep", "answerC": "run", "label": "1"}],
}


@pytest.mark.parametrize("task", sorted(FIXTURES))
def test_loaders_read_standard_formats(tmp_path, task):
    items = load_choice_task(task, jsonl(tmp_path / f"{task}.jsonl", FIXTURES[task]))
    assert len(items) == len(FIXTURES[task])
    item = items[0]
    assert len(item.contexts) == len(item.continuations) >= 2
    assert 0 <= item.label < len(item.continuations)


def test_loader_details(tmp_path):
    arc = load_choice_task("arc_easy", jsonl(tmp_path / "arc.jsonl", FIXTURES["arc"]))
    assert arc[0].contexts[0] == "Question: Which is a metal?\nAnswer:" and arc[0].label == 1
    assert arc[1].label == 0
    hs = load_choice_task("hellaswag", jsonl(tmp_path / "h.jsonl", FIXTURES["hellaswag"]))[0]
    assert hs.contexts[0] == "Cooking: A man cracks eggs. He" and hs.continuations[0] == " whisks them. well."
    wg = load_choice_task("winogrande", jsonl(tmp_path / "w.jsonl", FIXTURES["winogrande"]))[0]
    assert wg.contexts == ["The cup fell off the table because the cup", "The cup fell off the table because the table"]
    assert wg.continuations == [" was slippery.", " was slippery."] and wg.label == 0
    bq = load_choice_task("boolq", jsonl(tmp_path / "b.jsonl", FIXTURES["boolq"]))[0]
    assert bq.continuations == [" no", " yes"] and bq.label == 1


def test_piqa_labels_file(tmp_path):
    recs = [{k: v for k, v in FIXTURES["piqa"][0].items() if k != "label"}] * 2
    path = jsonl(tmp_path / "valid.jsonl", recs)
    with pytest.raises(TaskFormatError, match="labels.lst"):
        load_choice_task("piqa", path)
    (tmp_path / "valid-labels.lst").write_text("1\n0\n")
    assert [i.label for i in load_choice_task("piqa", path)] == [1, 0]


def test_bad_records_name_file_and_record(tmp_path):
    path = jsonl(tmp_path / "arc.jsonl", [FIXTURES["arc"][0], {"question": {"stem": "x"}}])
    with pytest.raises(TaskFormatError, match=r"arc.jsonl: record 2 is not in arc format"):
        load_choice_task("arc", path)
    (tmp_path / "broken.jsonl").write_text("{oops\n")
    with pytest.raises(TaskFormatError, match="broken.jsonl:1: not valid JSON"):
        load_choice_task("arc", tmp_path / "broken.jsonl")
    with pytest.raises(ValueError, match="unknown multiple-choice task"):
        load_choice_task("mmlu", path)


class LengthScorer:
    """Deterministic scorer: every character costs 1 nat, except 'right' answers cost 0.5 per char.

    It lets the arithmetic of acc vs acc_norm be checked exactly; real models are tested below.
    """

    def loglikelihood(self, pairs, batch_size=8):
        return [Score([-(0.5 if "good" in c else 1.0)] * len(c), False) for _, c in pairs]


def test_acc_and_acc_norm(tmp_path):
    from textbooklm.evals.choice_tasks import ChoiceItem

    items = [
        ChoiceItem("1", ["q"] * 2, [" good", " bad"], 0),  # both metrics right
        ChoiceItem("2", ["q"] * 2, [" a longer good answer here", " no"], 0),  # only acc_norm right
        ChoiceItem("3", ["q"] * 2, [" x", " good but long"], 0),  # both wrong... acc picks " x"
    ]
    res = evaluate_choices(LengthScorer(), items)
    assert res["n"] == 3
    assert res["acc"] == pytest.approx(2 / 3)  # items 1 and 3 (shortest wins under acc)
    assert res["acc_norm"] == pytest.approx(2 / 3)  # items 1 and 2
    assert [p["pred"] for p in res["predictions"]] == [0, 1, 0]
    assert [p["pred_norm"] for p in res["predictions"]] == [0, 0, 1]


def test_gsm8k_through_code_in_sandbox(tmp_path):
    from textbooklm.sandbox import Limits, Program, run_programs

    path = jsonl(tmp_path / "gsm.jsonl", [
        {"question": "Tom has 3 apples and buys 4 more. How many?", "answer": "3+4=7\n#### 7"},
        {"question": 'A "big" box holds 1,200 pens. Half are red. How many red?', "answer": "#### 600"},
    ])
    problems = load_gsm8k(path)
    assert reference_answer("so #### 1,234.5") == 1234.5
    good = ["    return 3 + 4\n", "    return 1200 / 2\n"]
    bad = ["    return 8\n", "    import os\n    os._exit(0)\n"]
    programs = [Program(id=f"{p.task_id}:{k}", code=p.prompt + c, test=p.test, entry_point=p.entry_point)
                for k, comps in (("good", good), ("bad", bad)) for p, c in zip(problems, comps, strict=True)]
    results = run_programs(programs, Limits(timeout_s=5), workers=2)
    statuses = [r.status for r in results]
    assert statuses[:3] == ["passed", "passed", "failed"]
    assert statuses[3] != "passed"  # exiting before the test runs never counts as a right answer


def test_chunks_respect_limit():
    text = "a = 1\n" * 1000 + "x" * 5000 + "\n"
    pieces = list(chunks(text, 700))
    assert all(len(p) <= 700 for p in pieces)
    assert "".join(pieces) == text


@pytest.fixture(scope="module")
def tiny_hf_model(tmp_path_factory):
    """A real (random-init) GPT-2 with a real BPE tokenizer trained here: no hub involved."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tinyhf")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    corpus = ["def add(a, b):\n    return a + b\n", "The cup fell off the table.", "Question: Answer: yes no"] * 20
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>")
    fast.save_pretrained(folder)
    import torch

    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=300, n_positions=128, n_embd=32, n_layer=2, n_head=2)).save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_hf_scorer_matches_full_forward_and_drives_evals(tiny_hf_model, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from textbooklm.evals.scoring import HFScorer

    scorer = HFScorer(tiny_hf_model)
    pairs = [("def add(a, b):", "\n    return a + b"), ("Question:", " yes"), ("The cup", " fell off the table.")]
    got = scorer.loglikelihood(pairs, batch_size=2)
    tok = AutoTokenizer.from_pretrained(tiny_hf_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_hf_model).eval()
    for (prompt, cont), score in zip(pairs, got, strict=True):
        ctx, cids = tok.encode(prompt), tok.encode(cont)
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([ctx + cids])).logits[0], -1)
        want = sum(float(logp[len(ctx) - 1 + k, t]) for k, t in enumerate(cids))
        assert score.total == pytest.approx(want, abs=1e-4)
    items = load_choice_task("boolq", jsonl(tmp_path / "b.jsonl", FIXTURES["boolq"] * 3))
    res = evaluate_choices(scorer, items)
    assert res["n"] == 3 and 0 <= res["acc"] <= 1
    ppl = perplexity(scorer, ["def add(a, b):\n    return a + b\n" * 3])
    assert ppl["tokens"] > 0 and math.isfinite(ppl["perplexity"]) and ppl["perplexity"] > 1
    assert ppl["nll_per_token"] == pytest.approx(math.log(ppl["perplexity"]))


def test_perplexity_jsonl_input_names_every_bad_line(tmp_path):
    from textbooklm.evals.perplexity import read_texts

    path = tmp_path / "texts.jsonl"
    path.write_bytes(b'{"text": "ok"}\n{"text": "half \\ud800"}\n{"text": 3}\n{"text": "caf\xe9"}\n')
    with pytest.raises(ValueError) as info:
        read_texts(path)
    message = str(info.value)
    assert f"{path}:2: invalid Unicode" in message and f"{path}:3: no string 'text' key" in message
    assert f"{path}:4: not valid UTF-8" in message
    (tmp_path / "good.jsonl").write_text('{"text": "a"}\n\n{"text": "b"}\n')
    assert read_texts(tmp_path / "good.jsonl") == ["a", "b"]
