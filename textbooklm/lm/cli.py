"""Commands of the model area: tokenizer, pack, train, generate, export-hf, import-hf, model-info.

Each command builds the same config model the pipeline uses and calls the same stage function, so
a command run and a pipeline run of the same settings produce the same files.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import typer

from textbooklm.progress import console


def _fail(msg: str) -> None:
    from rich.markup import escape

    console.print(f"[red]{escape(msg)}[/red]", soft_wrap=True, emoji=False)
    raise typer.Exit(2)


def _datasets(specs: list[str]) -> dict:
    from textbooklm.store import Dataset

    out = {}
    for spec in specs:
        ds = Dataset(spec)
        if not ds.path.is_dir():
            _fail(f"{spec}: no such dataset folder")
        out[spec] = ds
    return out


def tokenizer_cmd(
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write tokenizer.json (and a one-row table) into."),
    kind: str = typer.Option("bpe", "--kind", help="codegen (phi's GPT-2 + whitespace tokens) or bpe (trained)."),
    data: list[str] = typer.Option(
        None, "--data", help="Dataset folder(s) to train 'bpe' on (text or prompt/completion)."
    ),
    vocab_size: int = typer.Option(4096, "--vocab-size", help="Vocabulary size of a trained 'bpe'."),
    gpt2_files: str = typer.Option(None, "--gpt2-files", help="Folder with encoder.json + vocab.bpe (codegen)."),
) -> None:
    """Build the codegen tokenizer or train a byte-level BPE; saved as tokenizer.json."""
    from pydantic import ValidationError

    from textbooklm.lm.config import TokenizerConfig
    from textbooklm.lm.stage import run_tokenizer

    try:
        cfg = TokenizerConfig(kind=kind, vocab_size=vocab_size, gpt2_files=gpt2_files)  # type: ignore[arg-type]
    except ValidationError as exc:
        _fail(str(exc))
    try:
        run_tokenizer(cfg, _datasets(data or []), out)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))


def pack_cmd(
    datasets: list[str] = typer.Argument(..., help="Dataset folders, each optionally DATASET:WEIGHT (token shares)."),
    tokenizer: Path = typer.Option(..., "--tokenizer", "-t", help="tokenizer.json, or a folder holding one."),
    out: Path = typer.Option(..., "--out", "-o", help="Pack folder (index.json + token shards)."),
    val_fraction: float = typer.Option(0.02, "--val-fraction", help="Share of documents held out."),
    total_tokens: int = typer.Option(None, "--total-tokens", help="Train tokens to pack (repeats small sources)."),
    max_epochs: float = typer.Option(4.0, "--max-epochs", help="Most times a source is packed (inf: no cap)."),
    loss_on: str = typer.Option("all", "--loss-on", help="all, or completion (prompt/completion data)."),
    tokens_per_shard: int = typer.Option(50_000_000, "--tokens-per-shard", help="Tokens per shard file."),
    seed: int = typer.Option(0, "--seed", help="Shuffle / mixture seed."),
) -> None:
    """Tokenize documents and pack them into memmapped uint16/uint32 shards with a train/val split."""
    from pydantic import ValidationError

    from textbooklm.lm.config import PackConfig, PackSource
    from textbooklm.lm.stage import run_pack

    sources = []
    for spec in datasets:
        name, _, weight = spec.rpartition(":") if ":" in spec else (spec, "", "")
        if not Path(name).is_dir():
            _fail(f"{name}: no such dataset folder")
        try:
            sources.append(PackSource(dataset=name, weight=float(weight) if weight else 1.0))
        except (ValueError, ValidationError) as exc:
            _fail(f"{spec}: bad weight: {exc}")
    tok = tokenizer / "tokenizer.json" if tokenizer.is_dir() else tokenizer
    try:
        cfg = PackConfig(sources=sources, tokenizer=str(tok), val_fraction=val_fraction, total_tokens=total_tokens,
                         max_epochs=max_epochs, loss_on=loss_on, tokens_per_shard=tokens_per_shard,
                         seed=seed)  # type: ignore[arg-type]
        run_pack(cfg, {}, out)
    except ValidationError as exc:
        _fail(str(exc))
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))


def _load_train_config(path: Path | None, overrides: dict) -> object:
    from pydantic import ValidationError

    from textbooklm.config import format_validation_error
    from textbooklm.lm.config import TrainConfig

    raw: dict = {}
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text())
        except (FileNotFoundError, tomllib.TOMLDecodeError) as exc:
            _fail(f"{path}: {exc}")
        for section in ("pretrain", "finetune", "train"):  # a pipeline file's section, or a bare TrainConfig
            if section in raw and isinstance(raw[section], dict):
                raw = raw[section]
                break
    for key, value in overrides.items():
        if value is None:
            continue
        if key == "preset":
            raw.setdefault("model", {})["preset"] = value
        else:
            raw[key] = value
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as exc:
        _fail(format_validation_error(exc, str(path or "<options>")))


def train_cmd(
    data: Path = typer.Option(..., "--data", "-d", help="Token pack folder (from `textbooklm pack`)."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Run folder: checkpoints, metrics.csv, tensorboard/. Resumes if present."
    ),
    config: Path = typer.Option(
        None, "--config", "-c", help="TOML with a TrainConfig (bare, or a [pretrain]/[finetune] table)."
    ),
    preset: str = typer.Option(None, "--preset", help="Model preset: phi-1, phi-1.5, phi-1-small, tiny, nano."),
    optimizer: str = typer.Option(None, "--optimizer", help="phi-1-pretrain, phi-1-finetune, phi-1.5, tiny."),
    max_steps: int = typer.Option(None, "--max-steps", help="Optimizer steps."),
    batch_size: int = typer.Option(None, "--batch-size", help="Global batch (sequences)."),
    micro_batch_size: int = typer.Option(None, "--micro-batch-size", help="Sequences per forward per process."),
    lr: float = typer.Option(None, "--lr", help="Peak learning rate."),
    loss_on: str = typer.Option(None, "--loss-on", help="all or completion."),
    init_from: str = typer.Option(None, "--init-from", help="Checkpoint to start from (finetuning)."),
    dtype: str = typer.Option(None, "--dtype", help="auto, float32, bfloat16, float16."),
    compile: bool = typer.Option(None, "--compile/--no-compile", help="torch.compile the model."),
) -> None:
    """Train (or resume) a phi model. Under `torchrun --nproc_per_node N -m textbooklm.cli train ...` it runs DDP."""
    import json

    from textbooklm.lm.train import train

    cfg = _load_train_config(config, dict(preset=preset, optimizer=optimizer, max_steps=max_steps,
                                          batch_size=batch_size, micro_batch_size=micro_batch_size, lr=lr,
                                          loss_on=loss_on, init_from=init_from, dtype=dtype, compile=compile))
    if not (data / "index.json").is_file():
        _fail(f"{data}: not a token pack (no index.json); run `textbooklm pack` first")
    tok = json.loads((data / "index.json").read_text()).get("tokenizer")
    try:
        train(cfg, data, out, Path(tok) if tok and Path(tok).is_file() else None)  # type: ignore[arg-type]
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))


def generate_cmd(
    checkpoint: Path = typer.Argument(..., help="Checkpoint folder, training run folder, or Hugging Face phi folder."),
    prompt: list[str] = typer.Argument(..., help="Prompt(s); several are generated as one batch."),
    max_tokens: int = typer.Option(128, "--max-tokens", "-n", help="New tokens at most."),
    temperature: float = typer.Option(0.0, "--temperature", help="0 = greedy."),
    top_p: float = typer.Option(1.0, "--top-p", help="Nucleus sampling mass."),
    stop: list[str] = typer.Option(None, "--stop", help="Stop sequence (repeatable), e.g. --stop '\\ndef '."),
    seed: int = typer.Option(None, "--seed", help="Sampling seed."),
) -> None:
    """Complete prompts with a KV cache; prints each prompt followed by its completion."""
    from textbooklm.model.generate import CheckpointGenerator

    stops = [s.encode().decode("unicode_escape") for s in (stop or [])]
    try:
        gen = CheckpointGenerator(checkpoint)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    outs = gen.generate(list(prompt), max_new_tokens=max_tokens, temperature=temperature, top_p=top_p,
                        stop=stops, seed=seed)
    for p, o in zip(prompt, outs, strict=True):
        typer.echo(p + o)
        if not o.strip():  # say so: a blank line after the prompt reads as "nothing happened"
            n = len(gen.tokenizer.encode(o))
            typer.echo(f"(empty completion: {n} tokens" + (", all whitespace)" if n else ")"), err=True)
        if len(prompt) > 1:
            typer.echo("-" * 40)


def export_hf_cmd(
    checkpoint: Path = typer.Argument(..., help="textbooklm checkpoint or run folder."),
    out: Path = typer.Argument(
        ..., help="Folder for the Hugging Face PhiForCausalLM (config.json, safetensors, tokenizer)."
    ),
) -> None:
    """Export to Hugging Face PhiForCausalLM format (loads in transformers and vLLM)."""
    from textbooklm.model.checkpoint import load_model
    from textbooklm.model.hf import export_hf

    try:
        model, folder = load_model(checkpoint)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    tok = folder / "tokenizer.json"
    export_hf(model, out, tok if tok.is_file() else None)
    console.print(f"exported {folder} -> {out} (PhiForCausalLM)")


def import_hf_cmd(
    hf_folder: Path = typer.Argument(..., help="Hugging Face phi folder (config.json + *.safetensors)."),
    out: Path = typer.Argument(..., help="textbooklm checkpoint folder to write."),
) -> None:
    """Import a Hugging Face phi model as a textbooklm checkpoint."""
    from textbooklm.model.checkpoint import save_model
    from textbooklm.model.hf import import_hf

    try:
        model = import_hf(hf_folder)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    out.mkdir(parents=True, exist_ok=True)
    tok = hf_folder / "tokenizer.json"
    save_model(out, model.state_dict(), model.cfg, tok if tok.is_file() else None)
    console.print(f"imported {hf_folder} -> {out}")


def model_info_cmd(
    preset: str = typer.Argument("tiny", help="phi-1, phi-1.5, phi-1-small, tiny, nano."),
    vocab_size: int = typer.Option(50295, "--vocab-size", help="Tokenizer vocabulary (padded to 64)."),
) -> None:
    """Print a preset's parameter count and training FLOPs per token (builds it on the meta device)."""
    import torch

    from textbooklm.lm.config import ModelConfig
    from textbooklm.model.model import PhiConfig, PhiForCausalLM, describe

    shape = ModelConfig(preset=preset).resolved()  # type: ignore[arg-type]
    with torch.device("meta"):
        model = PhiForCausalLM(PhiConfig(vocab_size=vocab_size, **shape))  # type: ignore[arg-type]
    typer.echo(describe(model))


def register(app: typer.Typer) -> None:
    app.command("tokenizer")(tokenizer_cmd)
    app.command("pack")(pack_cmd)
    app.command("train")(train_cmd)
    app.command("generate")(generate_cmd)
    app.command("export-hf")(export_hf_cmd)
    app.command("import-hf")(import_hf_cmd)
    app.command("model-info")(model_info_cmd)
