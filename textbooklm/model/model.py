"""The phi model in one file (nanoGPT style): read it top to bottom.

A phi block (phi-1, phi-1.5, phi-2 share it):

    h = LayerNorm(x)
    x = x + Attention(h) + MLP(h)          # attention and MLP in parallel, one LayerNorm

Attention uses rotary position embeddings on only part of each head (``rotary_fraction``; phi: 32
of 64 dims, GPT-NeoX "rotate half" layout), biases everywhere, and PyTorch's
``scaled_dot_product_attention`` (flash / memory-efficient kernels on GPU). The MLP is
Linear -> GELU (tanh approximation, phi's ``gelu_new``) -> Linear. After the last block: a final
LayerNorm and an untied output head *with* a bias. The embedding and head rows are padded to a
multiple of 64 (phi: 50295 tokens -> 51200 rows) because matmuls with such shapes are faster.

Parameter names follow Hugging Face's ``PhiForCausalLM`` except the fused ``qkv`` projection (one
matmul instead of three; :mod:`textbooklm.model.hf` splits it on export).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class PhiConfig:
    """Shape of a phi model. ``vocab_size`` is the tokenizer's; the matrices use ``padded_vocab_size``."""

    vocab_size: int = 4096
    n_layer: int = 4
    n_embd: int = 256
    n_head: int = 4
    n_inner: int = 1024
    block_size: int = 256
    rotary_fraction: float = 0.5
    rope_theta: float = 10000.0
    layer_norm_eps: float = 1e-5
    dropout: float = 0.0  # attention, residual and embedding dropout (phi-1 pretraining used 0.1)
    pad_multiple: int = 64

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def rotary_dim(self) -> int:
        # Even, so the rotate-half layout splits it into two equal halves.
        return int(self.head_dim * self.rotary_fraction) // 2 * 2

    @property
    def padded_vocab_size(self) -> int:
        return -(-self.vocab_size // self.pad_multiple) * self.pad_multiple

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")
        if self.rotary_dim < 2:
            raise ValueError(f"rotary_fraction {self.rotary_fraction} leaves no rotary dims of head size "
                             f"{self.head_dim}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PhiConfig:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


# ---------------------------------------------------------------------------------------------
# Rotary embeddings


def rotary_tables(cfg: PhiConfig, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin for ``positions`` (any shape), each of shape positions.shape + (rotary_dim,).

    Computed in float32 whatever the model's dtype: angles of late positions lose precision in bf16.
    """
    dim = cfg.rotary_dim
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.float32, device=positions.device) / dim))
    freqs = positions.to(torch.float32)[..., None] * inv_freq
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the first ``rotary_dim`` dims of each head of x (B, H, T, D); the rest pass through."""
    rd = cos.shape[-1]
    x_rot, x_pass = x[..., :rd], x[..., rd:]
    half = rd // 2
    x1, x2 = x_rot[..., :half], x_rot[..., half:]
    rotated = torch.cat((-x2, x1), dim=-1)
    x_rot = x_rot * cos + rotated * sin
    return torch.cat((x_rot.to(x.dtype), x_pass), dim=-1)


# ---------------------------------------------------------------------------------------------
# The block


class KVCache:
    """Keys and values of every layer for the tokens seen so far (generation); grows by concatenation."""

    def __init__(self, n_layer: int):
        self.layers: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * n_layer

    @property
    def length(self) -> int:
        first = self.layers[0]
        return 0 if first is None else first[0].shape[2]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        prev = self.layers[layer]
        if prev is not None:
            k = torch.cat((prev[0], k), dim=2)
            v = torch.cat((prev[1], v), dim=2)
        self.layers[layer] = (k, v)
        return k, v


class PhiAttention(nn.Module):
    def __init__(self, cfg: PhiConfig, layer: int):
        super().__init__()
        self.cfg = cfg
        self.layer = layer
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=True)
        self.dense = nn.Linear(cfg.n_embd, cfg.n_embd, bias=True)

    def forward(
        self,
        h: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        mask: torch.Tensor | None,
        cache: KVCache | None,
    ) -> torch.Tensor:
        B, T, C = h.shape
        q, k, v = self.qkv(h).view(B, T, 3, self.cfg.n_head, self.cfg.head_dim).permute(2, 0, 3, 1, 4)
        cos, sin = rope
        q = apply_rotary(q, cos, sin)
        k = apply_rotary(k, cos, sin)
        if cache is not None:
            k, v = cache.update(self.layer, k, v)
        # No explicit mask: plain causal attention, which lets SDPA pick its fastest kernel.
        p = self.cfg.dropout if self.training else 0.0  # attention dropout (phi-1 pretraining: 0.1)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None, dropout_p=p)
        return self.dense(y.transpose(1, 2).reshape(B, T, C))


class PhiMLP(nn.Module):
    def __init__(self, cfg: PhiConfig):
        super().__init__()
        self.fc1 = nn.Linear(cfg.n_embd, cfg.n_inner, bias=True)
        self.fc2 = nn.Linear(cfg.n_inner, cfg.n_embd, bias=True)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(h), approximate="tanh"))


class PhiBlock(nn.Module):
    def __init__(self, cfg: PhiConfig, layer: int):
        super().__init__()
        self.input_layernorm = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_eps)
        self.self_attn = PhiAttention(cfg, layer)
        self.mlp = PhiMLP(cfg)
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x, rope, mask=None, cache=None):
        h = self.input_layernorm(x)
        return x + self.resid_dropout(self.self_attn(h, rope, mask, cache)) + self.resid_dropout(self.mlp(h))


# ---------------------------------------------------------------------------------------------
# The model


class PhiForCausalLM(nn.Module):
    def __init__(self, cfg: PhiConfig):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.padded_vocab_size, cfg.n_embd)
        self.embed_dropout = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(PhiBlock(cfg, i) for i in range(cfg.n_layer))
        self.final_layernorm = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_eps)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.padded_vocab_size, bias=True)
        # Rotary tables for the training length, cached (non-persistent: rebuilt, never saved).
        cos, sin = rotary_tables(cfg, torch.arange(cfg.block_size))
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # GPT-2 / phi style: N(0, 0.02) weights, zero biases, unit LayerNorms.
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def _rope(self, positions: torch.Tensor | None, T: int, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
        if positions is None and offset + T <= self.cfg.block_size:
            return self.rope_cos[offset : offset + T], self.rope_sin[offset : offset + T]
        if positions is None:
            positions = torch.arange(offset, offset + T, device=self.rope_cos.device)
        cos, sin = rotary_tables(self.cfg, positions)
        if cos.dim() == 3:  # per-row positions (B, T, D) -> broadcast over heads
            cos, sin = cos[:, None], sin[:, None]
        return cos, sin

    def forward(
        self,
        idx: torch.Tensor,
        positions: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """Logits (B, T, padded_vocab) for token ids ``idx`` (B, T).

        ``positions`` (B, T) and a boolean ``mask`` (B, 1, T, S; True = may attend) serve batched
        generation with left padding; training passes neither and gets plain causal attention.
        """
        T = idx.shape[1]
        offset = cache.length if cache is not None else 0
        rope = self._rope(positions, T, offset)
        if mask is None and cache is not None and offset > 0:
            # Decoding with a cache and no padding: every new token may see all cached ones.
            mask = torch.ones(T, offset + T, dtype=torch.bool, device=idx.device).tril(offset)
        x = self.embed_dropout(self.embed_tokens(idx))
        for block in self.layers:
            x = block(x, rope, mask, cache)
        return self.lm_head(self.final_layernorm(x))

    # -- accounting ------------------------------------------------------------------------
    def num_params(self, embeddings: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        return n if embeddings else n - self.embed_tokens.weight.numel()

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token: 6N for the matmuls plus 12 L C T for attention (PaLM appendix B)."""
        cfg = self.cfg
        T = seq_len or cfg.block_size
        return 6 * self.num_params(embeddings=False) + 12 * cfg.n_layer * cfg.n_embd * T


def describe(model: PhiForCausalLM) -> str:
    """One line: parameter count and training FLOPs per token."""
    n = model.num_params()
    fpt = model.flops_per_token()
    return (f"phi model: {n / 1e6:,.2f}M parameters ({model.num_params(False) / 1e6:,.2f}M without embeddings), "
            f"{fpt / 1e9:,.3f} GFLOPs/token at seq {model.cfg.block_size}")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decay matrices only; biases, LayerNorms and embeddings are not decayed."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 and "embed_tokens" not in name else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
