"""The phi model: shapes, KV cache, and logit parity with transformers' PhiForCausalLM both ways."""

from __future__ import annotations

import os

import pytest
import torch

from textbooklm.model.hf import export_hf, import_hf
from textbooklm.model.model import KVCache, PhiConfig, PhiForCausalLM

os.environ.setdefault("HF_HUB_OFFLINE", "1")
CFG = dict(vocab_size=1000, n_layer=2, n_embd=64, n_head=4, n_inner=256, block_size=64)


def _random_model(seed: int = 0, **kw) -> PhiForCausalLM:
    torch.manual_seed(seed)
    model = PhiForCausalLM(PhiConfig(**{**CFG, **kw})).eval()
    with torch.no_grad():  # non-trivial biases and LayerNorms, so every parameter's mapping is tested
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def test_vocab_padded_to_64_and_block_structure():
    model = _random_model()
    assert model.cfg.padded_vocab_size == 1024
    assert model.lm_head.weight.shape == (1024, 64) and model.lm_head.bias is not None
    assert model.embed_tokens.weight.data_ptr() != model.lm_head.weight.data_ptr()  # untied
    assert model.cfg.rotary_dim == 8  # half of head size 16
    assert model(torch.randint(0, 1000, (2, 10))).shape == (2, 10, 1024)


def test_presets_parameter_counts():
    from textbooklm.lm.config import ModelConfig

    with torch.device("meta"):
        phi1 = PhiForCausalLM(PhiConfig(vocab_size=50295, **ModelConfig(preset="phi-1").resolved()))
        small = PhiForCausalLM(PhiConfig(vocab_size=50295, **ModelConfig(preset="phi-1-small").resolved()))
    # phi-1 is a 1.3B model (1.42B counting its 51200-row embedding and head), phi-1-small 350M.
    assert 1.40e9 < phi1.num_params() < 1.43e9
    assert 0.34e9 < small.num_params() < 0.37e9
    assert phi1.cfg.padded_vocab_size == 50304  # next multiple of 64 (phi itself ships 51200 rows)
    assert phi1.flops_per_token() > 6 * 1.3e9


def test_kv_cache_matches_full_forward():
    model = _random_model()
    x = torch.randint(0, 1000, (2, 30))
    with torch.no_grad():
        full = model(x)
        cache = KVCache(model.cfg.n_layer)
        parts = [model(x[:, :17], cache=cache)] + [model(x[:, t : t + 1], cache=cache) for t in range(17, 30)]
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=0)


def test_export_loads_in_transformers_with_same_logits(tmp_path):
    from transformers import AutoModelForCausalLM

    model = _random_model()
    export_hf(model, tmp_path / "hf")
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32).eval()
    assert type(hf).__name__ == "PhiForCausalLM"
    x = torch.randint(0, 1000, (3, 40))
    with torch.no_grad():
        diff = (hf(x).logits - model(x)).abs().max().item()
    assert diff < 1e-5


@pytest.mark.parametrize("vocab", [512, 515])  # 515: a row count that is not a multiple of 64 is kept
def test_import_from_transformers_with_same_logits(tmp_path, vocab):
    from transformers import PhiConfig as HFConfig
    from transformers import PhiForCausalLM as HFPhi

    torch.manual_seed(1)
    hcfg = HFConfig(vocab_size=vocab, hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                    num_attention_heads=4, max_position_embeddings=64, partial_rotary_factor=0.5)
    hf = HFPhi(hcfg).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    hf.save_pretrained(tmp_path / "hf")
    ours = import_hf(tmp_path / "hf").eval()
    assert ours.cfg.padded_vocab_size == vocab
    x = torch.randint(0, vocab, (2, 50))
    with torch.no_grad():
        diff = (hf(x).logits - ours(x)).abs().max().item()
    assert diff < 1e-5


def test_import_rejects_non_phi(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    with pytest.raises(ValueError, match="only 'phi'"):
        import_hf(tmp_path)
