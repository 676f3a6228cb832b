"""`textbooklm generate` says when a completion is empty instead of printing a blank (issue 25, item 4)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from textbooklm.model.checkpoint import save_model
from textbooklm.model.model import PhiConfig, PhiForCausalLM
from textbooklm.model.tokenizer import load_tokenizer


@pytest.mark.slow
def test_generate_says_the_completion_is_empty(tmp_path, bpe_tokenizer):
    tok = load_tokenizer(bpe_tokenizer)
    newline = tok.encode("\n")
    assert len(newline) == 1
    model = PhiForCausalLM(PhiConfig(vocab_size=tok.vocab_size, n_layer=1, n_embd=32, n_head=2, n_inner=64,
                                     block_size=64))
    with torch.no_grad():  # a real forward pass whose head always picks the newline token
        model.lm_head.weight.zero_()
        model.lm_head.bias.zero_()
        model.lm_head.bias[newline[0]] = 30.0
    save_model(tmp_path, model.state_dict(), model.cfg, bpe_tokenizer)
    proc = subprocess.run([sys.executable, "-m", "textbooklm.cli", "generate", str(tmp_path), "def f(x):",
                           "--max-tokens", "5"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "def f(x):\n\n\n\n\n\n"
    assert "(empty completion: 5 tokens, all whitespace)" in proc.stderr
