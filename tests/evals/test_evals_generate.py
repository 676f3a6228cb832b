"""Generation with a real (tiny, random-init) Hugging Face model built in a tmp folder, then the
`eval generate` -> `eval execute` CLI round trip. No hub access."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    from textbooklm.code_tasks import load_problems

    folder = tmp_path_factory.mktemp("tiny-gpt2")
    texts = [p.prompt + (p.canonical_solution or "") for p in load_problems("humaneval")]
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=600, special_tokens=["<|endoftext|>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=fast.vocab_size, n_positions=1024, n_embd=32, n_layer=2, n_head=2,
                        eos_token_id=fast.eos_token_id, bos_token_id=fast.eos_token_id)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_hf_generator_batches_with_left_padding(tiny_model):
    from textbooklm.code_tasks import load_problems
    from textbooklm.evals.generate import STOP_SEQUENCES, SamplingSettings, make_generator

    gen = make_generator(str(tiny_model))
    prompts = [p.prompt for p in load_problems("humaneval")[:3]]  # different lengths -> padding
    greedy = SamplingSettings(n=2, temperature=0.0, max_new_tokens=12, batch_size=3)
    batched = gen.generate(prompts, greedy)
    alone = [gen.generate([p], greedy)[0] for p in prompts]
    assert batched == alone  # left padding: a batch decodes exactly like single prompts
    assert all(len(c) == 2 and c[0] == c[1] for c in batched)
    sampled = gen.generate(prompts, SamplingSettings(n=3, temperature=1.0, max_new_tokens=12, batch_size=4))
    assert [len(c) for c in sampled] == [3, 3, 3]
    assert all(s not in c for cs in sampled for c in cs for s in STOP_SEQUENCES)


@pytest.mark.slow
def test_generate_then_execute_cli(tiny_model, tmp_path):
    samples = tmp_path / "samples.jsonl"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    gen = [sys.executable, "-m", "textbooklm.cli", "eval", "generate", str(tiny_model), "--task", "humaneval",
           "--n", "2", "--temperature", "0.8", "--max-new-tokens", "8", "--limit", "3", "--out", str(samples)]
    proc = subprocess.run(gen, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    assert sorted((r["task_id"], r["completion_id"]) for r in rows) == [
        (f"HumanEval/{i}", j) for i in range(3) for j in range(2)]
    meta = json.loads((tmp_path / "samples.jsonl.meta.json").read_text())
    assert meta["task"] == "humaneval" and meta["sampling"]["temperature"] == 0.8

    proc = subprocess.run(gen, capture_output=True, text=True, timeout=300, env=env)  # resume: nothing new
    assert proc.returncode == 0 and len(samples.read_text().splitlines()) == 6

    ex = [sys.executable, "-m", "textbooklm.cli", "eval", "execute", str(samples), "--timeout", "2",
          "--workers", "1", "--k", "1,2"]
    proc = subprocess.run(ex, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "samples.results.json").read_text())
    assert result["samples"] == 6 and result["problems"] == 3
    assert set(result["pass_at_k"]) == {"pass@1", "pass@2"} and result["pass_at_k"]["pass@1"] == 0.0
    assert result["limits"]["timeout_s"] == 2.0 and result["generation"]["sampling"]["n"] == 2
    assert len((tmp_path / "samples.results.jsonl").read_text().splitlines()) == 6


class _Counting:
    """A deterministic Generator: completion j of a prompt is 'c<j>'; counts the prompts it is asked."""

    name = "counting"

    def __init__(self) -> None:
        self.asked: list[str] = []

    def generate(self, prompts, settings):
        self.asked += prompts
        return [[f"c{j}" for j in range(settings.n)] for _ in prompts]


def _problems(k: int):
    from textbooklm.problems import Problem

    return [Problem(task_id=f"T/{i}", prompt=f"p{i}", entry_point="f", test="") for i in range(k)]


def test_torn_last_line_is_sampled_again_without_duplicates(tmp_path):
    from textbooklm.evals.generate import SamplingSettings, generate_samples

    out, settings = tmp_path / "s.jsonl", SamplingSettings(n=2, temperature=0.8, batch_size=2)
    generate_samples(_Counting(), _problems(3), settings, out, {"task": "t"})
    whole = out.read_bytes()
    out.write_bytes(whole[: whole.rindex(b"\n", 0, len(whole) - 1) + 12])  # kill -9 mid-way through the last line
    gen = _Counting()
    written = generate_samples(gen, _problems(3), settings, out, {"task": "t"})
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert written == 1 and gen.asked == ["p2"]
    assert sorted((r["task_id"], r["completion_id"]) for r in rows) == [
        (f"T/{i}", j) for i in range(3) for j in range(2)]


def test_damaged_middle_line_is_an_error_naming_it(tmp_path):
    from textbooklm.evals.generate import SamplingSettings, generate_samples

    out, settings = tmp_path / "s.jsonl", SamplingSettings(n=1, temperature=0.0)
    generate_samples(_Counting(), _problems(3), settings, out, {"task": "t"})
    lines = out.read_text().splitlines()
    out.write_text("\n".join([lines[0], "{oops", lines[2]]) + "\n")
    with pytest.raises(ValueError, match=r"s\.jsonl:2: not a sample line"):
        generate_samples(_Counting(), _problems(3), settings, out, {"task": "t"})


def test_samples_from_other_settings_are_refused_not_mixed(tmp_path):
    from textbooklm.evals.generate import SamplingSettings, generate_samples

    out = tmp_path / "s.jsonl"
    generate_samples(_Counting(), _problems(2), SamplingSettings(n=2, temperature=0.8), out, {"task": "t"})
    before = out.read_bytes()
    with pytest.raises(ValueError, match=r"temperature 0\.8 \(now 0\.2\)"):
        generate_samples(_Counting(), _problems(4), SamplingSettings(n=2, temperature=0.2), out, {"task": "t"})
    assert out.read_bytes() == before
    # batch size only changes how many run at once: resuming with another one is fine
    written = generate_samples(_Counting(), _problems(4), SamplingSettings(n=2, temperature=0.8, batch_size=3),
                               out, {"task": "t"})
    assert written == 4
    stray = tmp_path / "stray.jsonl"
    stray.write_text(before.decode())
    with pytest.raises(ValueError, match="no stray.jsonl.meta.json"):
        generate_samples(_Counting(), _problems(2), SamplingSettings(n=2), stray, {"task": "t"})
