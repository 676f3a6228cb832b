"""Export to and import from Hugging Face's ``PhiForCausalLM`` format.

The exported folder is what ``transformers`` (``AutoModelForCausalLM.from_pretrained``) and vLLM
load: ``config.json`` (model_type phi), ``model.safetensors`` and the tokenizer files. The only
renaming is the attention projection: textbooklm keeps one fused ``qkv`` matrix (one matmul), HF
keeps ``q_proj``, ``k_proj`` and ``v_proj``. Everything else has HF's names already.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from textbooklm.model.model import PhiConfig, PhiForCausalLM

_TOP = {"embed_tokens", "final_layernorm"}


def to_hf_state_dict(model: PhiForCausalLM) -> dict[str, torch.Tensor]:
    """Our state dict under HF names (qkv split into q/k/v)."""
    out: dict[str, torch.Tensor] = {}
    for name, t in model.state_dict().items():
        t = t.detach().cpu()
        if name.startswith("lm_head"):
            out[name] = t.contiguous()
        elif ".self_attn.qkv." in name:
            prefix, kind = name.split(".self_attn.qkv.")
            for proj, part in zip(("q_proj", "k_proj", "v_proj"), t.chunk(3, dim=0), strict=True):
                out[f"model.{prefix}.self_attn.{proj}.{kind}"] = part.contiguous()
        else:
            out[f"model.{name}"] = t.contiguous()
    return out


def from_hf_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HF names -> ours (q/k/v fused into qkv)."""
    out: dict[str, torch.Tensor] = {}
    for name, t in sd.items():
        if name.startswith("model."):
            name = name[len("model."):]
        if ".self_attn.q_proj." in name:
            prefix, kind = name.split(".self_attn.q_proj.")
            parts = [sd[f"model.{prefix}.self_attn.{p}.{kind}"] for p in ("q_proj", "k_proj", "v_proj")]
            out[f"{prefix}.self_attn.qkv.{kind}"] = torch.cat(parts, dim=0)
        elif ".self_attn.k_proj." in name or ".self_attn.v_proj." in name:
            continue
        else:
            out[name] = t
    return out


def hf_config(cfg: PhiConfig, eot_id: int | None) -> dict:
    """The ``config.json`` of a PhiForCausalLM with our shape."""
    return {
        "architectures": ["PhiForCausalLM"],
        "model_type": "phi",
        "vocab_size": cfg.padded_vocab_size,
        "hidden_size": cfg.n_embd,
        "intermediate_size": cfg.n_inner,
        "num_hidden_layers": cfg.n_layer,
        "num_attention_heads": cfg.n_head,
        "num_key_value_heads": cfg.n_head,
        "max_position_embeddings": cfg.block_size,
        "hidden_act": "gelu_new",
        "layer_norm_eps": cfg.layer_norm_eps,
        "rope_theta": cfg.rope_theta,
        "partial_rotary_factor": cfg.rotary_dim / cfg.head_dim,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta,
                            "partial_rotary_factor": cfg.rotary_dim / cfg.head_dim},
        "resid_pdrop": cfg.dropout,
        "embd_pdrop": cfg.dropout,
        "attention_dropout": cfg.dropout,
        "qk_layernorm": False,
        "tie_word_embeddings": False,
        "use_cache": True,
        "torch_dtype": "float32",
        "bos_token_id": eot_id,
        "eos_token_id": eot_id,
        "textbooklm_vocab_size": cfg.vocab_size,
    }


def export_hf(model: PhiForCausalLM, out: str | Path, tokenizer_json: Path | None = None) -> Path:
    """Write ``model`` as a Hugging Face PhiForCausalLM folder (plus tokenizer files if given)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    eot_id = None
    if tokenizer_json is not None and Path(tokenizer_json).is_file():
        from textbooklm.model.tokenizer import load_tokenizer

        tok = load_tokenizer(tokenizer_json)
        eot_id = tok.eot_id
        _write_hf_tokenizer(tokenizer_json, out)
    save_file(to_hf_state_dict(model), str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(hf_config(model.cfg, eot_id), indent=2) + "\n")
    return out


def _write_hf_tokenizer(tokenizer_json: Path, out: Path) -> None:
    """tokenizer.json plus the tokenizer_config.json AutoTokenizer wants."""
    from textbooklm.model.tokenizer import EOT, load_tokenizer

    tok = load_tokenizer(tokenizer_json)
    (out / "tokenizer.json").write_text(Path(tokenizer_json).read_text())
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": EOT, "eos_token": EOT, "unk_token": EOT,
        "model_max_length": 1_000_000, "clean_up_tokenization_spaces": False,
        "add_prefix_space": False, "vocab_size": tok.vocab_size,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out / "special_tokens_map.json").write_text(
        json.dumps({"bos_token": EOT, "eos_token": EOT, "unk_token": EOT}, indent=2) + "\n")


def import_hf(folder: str | Path) -> PhiForCausalLM:
    """Build our model from a Hugging Face phi folder (config.json + safetensors, sharded or not)."""
    folder = Path(folder)
    try:
        c = json.loads((folder / "config.json").read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{folder}: no config.json (not a Hugging Face model folder)") from None
    if c.get("model_type") != "phi":
        raise ValueError(f"{folder}/config.json: model_type {c.get('model_type')!r}; only 'phi' can be imported")
    if c.get("num_key_value_heads", c["num_attention_heads"]) != c["num_attention_heads"]:
        raise ValueError(f"{folder}/config.json: grouped-query attention is not part of the phi-1 architecture")
    if c.get("qk_layernorm"):
        raise ValueError(f"{folder}/config.json: qk_layernorm is not supported")
    if c.get("hidden_act", "gelu_new") not in ("gelu_new", "gelu_pytorch_tanh"):
        raise ValueError(f"{folder}/config.json: activation {c.get('hidden_act')!r} is not phi's tanh GELU")
    rope = c.get("rope_parameters") or {}
    head_dim = c["hidden_size"] // c["num_attention_heads"]
    vocab = c["vocab_size"]
    # The tokenizer's size, when known, so sampling never picks a padding row (phi-1: 50295 of 51200).
    real_vocab = c.get("textbooklm_vocab_size")
    if real_vocab is None and (folder / "tokenizer.json").is_file():
        from textbooklm.model.tokenizer import load_tokenizer

        real_vocab = load_tokenizer(folder).vocab_size
    real_vocab = min(int(real_vocab or vocab), vocab)
    cfg = PhiConfig(
        vocab_size=real_vocab, pad_multiple=vocab,  # padded size = exactly the checkpoint's rows
        n_layer=c["num_hidden_layers"], n_embd=c["hidden_size"], n_head=c["num_attention_heads"],
        n_inner=c["intermediate_size"], block_size=c.get("max_position_embeddings", 2048),
        rotary_fraction=rope.get("partial_rotary_factor", c.get("partial_rotary_factor", 0.5)),
        rope_theta=rope.get("rope_theta", c.get("rope_theta", 10000.0)),
        layer_norm_eps=c.get("layer_norm_eps", 1e-5),
        dropout=float(c.get("resid_pdrop", 0.0) or 0.0),
    )
    if cfg.rotary_dim != int(head_dim * cfg.rotary_fraction):
        raise ValueError(f"{folder}/config.json: rotary dims {head_dim * cfg.rotary_fraction} must be even")
    sd: dict[str, torch.Tensor] = {}
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder}: no *.safetensors weights (pytorch_model.bin is not read: pickle)")
    for f in files:
        sd.update(load_file(str(f)))
    model = PhiForCausalLM(cfg)
    state = from_hf_state_dict(sd)
    state = {k: v.to(torch.float32) for k, v in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{folder}: weights do not fit a phi model: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    return model
