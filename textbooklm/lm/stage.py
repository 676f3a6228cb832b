"""Pipeline stages of the model area: ``tokenizer``, ``pack``, ``pretrain``, ``finetune``.

Each is ``run(config_section, inputs, out, ctx) -> Dataset``. The output Dataset is a small table
(what was built, with its numbers); the artefacts sit beside it in ``out``: ``tokenizer.json``, the
token pack (``index.json`` + shards), or the training run (``train/`` with checkpoints, metrics.csv,
TensorBoard). Inputs are found by what they hold, not by their stage names: the input folder with a
``tokenizer.json`` is the tokenizer, the one with ``index.json`` the pack, the one with a ``train/``
run the checkpoint to finetune from; every other input is data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from textbooklm.lm.config import PackConfig, TokenizerConfig, TrainConfig
from textbooklm.progress import summary_line
from textbooklm.store import Dataset, finish_dataset, records_to_table, shard_name, write_table


def _finish(out: Path, rows: list[dict[str, Any]], stage: str, ctx: Any, parents: list[Dataset], line: str,
            announce: bool = False, summary: dict[str, Any] | None = None) -> Dataset:
    if announce:
        summary_line(line)
    for old in Dataset(out).shards():
        old.unlink()
    write_table(out / shard_name(0), records_to_table(rows))
    return finish_dataset(out, stage=stage, config_hash=getattr(ctx, "config_hash", ""),
                          parents=[str(p.path) for p in parents], summary={"line": line, **(summary or {})})


def _is_tokenizer(ds: Dataset) -> bool:
    return (ds.path / "tokenizer.json").is_file() and not (ds.path / "train").exists()


def _is_pack(ds: Dataset) -> bool:
    return (ds.path / "index.json").is_file()


def _is_run(ds: Dataset) -> bool:
    return (ds.path / "train" / "latest.json").is_file()


def _data_inputs(inputs: dict[str, Dataset]) -> dict[str, Dataset]:
    return {k: v for k, v in inputs.items() if not (_is_tokenizer(v) or _is_pack(v) or _is_run(v))}


def resolve_dataset(name: str, inputs: dict[str, Dataset], ctx: Any) -> Dataset:
    """A dataset by name: an input, else through the run's naming rule (filtered, decontaminated), else a path."""
    if name in inputs:
        return inputs[name]
    if ctx is not None and hasattr(ctx, "dataset"):
        return ctx.dataset(name)
    if Path(name).is_dir():
        return Dataset(name)
    raise FileNotFoundError(f"dataset {name!r}: not an input stage ({sorted(inputs)}) nor a folder")


def default_sources(inputs: dict[str, Dataset], ctx: Any, kind: str | None) -> list[tuple[str, Dataset]]:
    """The training datasets a stage uses when its config names none, from the registry.

    ``kind`` is ``pretrain`` (filtered code, textbooks), ``finetune`` (exercises) or None (all). With a
    filter, the corpus is the filtered one; with decontam, every dataset is its cleaned copy.
    """
    if ctx is not None and hasattr(ctx, "training_sources"):
        return [(n, resolve_dataset(n, inputs, ctx)) for n in ctx.training_sources(kind)]
    return list(_data_inputs(inputs).items())


def _find_tokenizer(explicit: str | None, inputs: dict[str, Dataset], ctx: Any) -> Path:
    if explicit:
        p = Path(explicit)
        if p.is_file():
            return p
        return resolve_dataset(explicit, inputs, ctx).path / "tokenizer.json"
    found = [d.path / "tokenizer.json" for d in inputs.values() if _is_tokenizer(d)]
    if not found:  # finetuning: the tokenizer saved with the checkpoint being finetuned
        from textbooklm.model.checkpoint import resolve_checkpoint

        found = [p for d in inputs.values() if _is_run(d)
                 if (p := resolve_checkpoint(d.path / "train") / "tokenizer.json").is_file()]
    if not found:
        raise FileNotFoundError("no tokenizer: give the stage a 'tokenizer' input or set its tokenizer path")
    return found[0]


# ---------------------------------------------------------------------------------------------


def run_tokenizer(cfg: TokenizerConfig, inputs: dict[str, Dataset], out: Path, ctx: Any = None) -> Dataset:
    """Build (codegen) or train (bpe) the tokenizer; writes ``out/tokenizer.json``."""
    from textbooklm.model.tokenizer import codegen_tokenizer, train_bpe

    out.mkdir(parents=True, exist_ok=True)
    data = [resolve_dataset(s, inputs, ctx) for s in cfg.sources] or [d for _, d in default_sources(inputs, ctx, None)]
    if cfg.kind == "codegen":
        tok = codegen_tokenizer(cfg.gpt2_files)
        docs = 0
    else:
        if not data:
            raise ValueError("tokenizer: kind 'bpe' is trained on data, but the stage has no input datasets")
        count = {"docs": 0}

        def texts():
            for ds in data:
                for text in document_texts(ds):
                    if count["docs"] >= cfg.max_documents:
                        return
                    count["docs"] += 1
                    yield text

        tok = train_bpe(texts(), cfg.vocab_size)
        docs = count["docs"]
    tok.save(out / "tokenizer.json")
    line = (f"tokenizer: {cfg.kind}, {tok.vocab_size:,} tokens"
            + (f", trained on {docs:,} documents" if cfg.kind == "bpe" else "") + f" -> {out / 'tokenizer.json'}")
    rows = [{"kind": cfg.kind, "vocab_size": tok.vocab_size, "eot_id": tok.eot_id, "documents": docs,
             "path": "tokenizer.json"}]
    return _finish(out, rows, "tokenizer", ctx, data, line, announce=True)


def document_texts(ds: Dataset):
    """Each record's training text: ``text``, or ``prompt + completion`` for exercises.

    Exercises that decontam marked held out (provenance ``decontam.split``) are left out: they stay in
    the cleaned exercises only to be finetuning's validation split and eval's held-out set, and a
    tokenizer trained on them would have read them.
    """
    names = set(ds.schema().names) if ds.schema() is not None else set()
    if {"prompt", "completion"} <= names:
        from textbooklm.record import provenance

        cols = ["prompt", "completion", *(["provenance"] if "provenance" in names else [])]
        for r in ds.iter_records(columns=cols):
            if (provenance(r).get("decontam") or {}).get("split") == "heldout":
                continue
            yield (r["prompt"] or "") + (r["completion"] or "")
    elif "text" in names:
        for r in ds.iter_records(columns=["text"]):
            yield r["text"] or ""
    else:
        raise ValueError(f"{ds.path}: no 'text' column nor 'prompt'/'completion' columns to train a tokenizer on")


def run_pack(cfg: PackConfig, inputs: dict[str, Dataset], out: Path, ctx: Any = None,
             kind: str = "pretrain") -> Dataset:
    """Tokenize and pack the mixture into ``out`` (``index.json`` + shards).

    No ``sources``: the run's ``kind`` training data (pretraining: filtered code and textbooks).
    """
    from textbooklm.lm.pack import pack
    from textbooklm.model.tokenizer import load_tokenizer

    out.mkdir(parents=True, exist_ok=True)
    tok_path = _find_tokenizer(cfg.tokenizer, inputs, ctx)
    tok = load_tokenizer(tok_path)
    if cfg.sources:
        sources = [(s.dataset, resolve_dataset(s.dataset, inputs, ctx), s.weight) for s in cfg.sources]
    else:
        sources = [(k, v, 1.0) for k, v in default_sources(inputs, ctx, kind)]
    caps = cfg.source_max_epochs() if cfg.sources else cfg.max_epochs
    index = pack(sources, tok, out, text_column=cfg.text_column, loss_on=cfg.loss_on,
                 val_fraction=cfg.val_fraction, total_tokens=cfg.total_tokens, max_epochs=caps,
                 tokens_per_shard=cfg.tokens_per_shard, seed=cfg.seed, tokenizer_path=str(tok_path))
    rows = [{"dataset": s["dataset"], "weight": s["weight"], "share": s["share"],
             "train_tokens_available": s["train_tokens"], "train_tokens_packed": s["packed"]["tokens"],
             "epochs": s["packed"]["epochs"], "max_epochs": s["packed"]["max_epochs"], "capped": s["packed"]["capped"],
             "val_tokens": s["val_tokens"]} for s in index["sources"]]
    tr = index["splits"]["train"]
    summary = {"tokens": tr["tokens"], "asked_train_tokens": index["asked_train_tokens"],
               "train tokens by source": {s["dataset"]: s["packed"]["tokens"] for s in index["sources"]},
               "epochs by source": {s["dataset"]: round(s["packed"]["epochs"], 3) for s in index["sources"]},
               "warnings": index["warnings"]}
    return _finish(out, rows, "pack", ctx, [d for _, d, _ in sources], index["line"], summary=summary)


def _train_stage(cfg: TrainConfig, inputs: dict[str, Dataset], out: Path, ctx: Any, stage: str) -> Dataset:
    from textbooklm.lm.train import train
    from textbooklm.model.train_log import read_metrics

    out.mkdir(parents=True, exist_ok=True)
    parents = list(inputs.values())
    if cfg.data is not None:
        # Pack inside the stage (finetuning exercises); the pack is kept under out/data.
        data_cfg = cfg.data
        if cfg.loss_on == "completion":
            data_cfg = data_cfg.model_copy(update={"loss_on": "completion"})
        run_pack(data_cfg, inputs, out / "data", ctx, kind="finetune")
        data_dir = out / "data"
        packed = json.loads((data_dir / "index.json").read_text())["splits"]["train"]["tokens"]
        if packed == 0:
            # e.g. a weak offline teacher whose exercises all failed verification: say so, train nothing.
            sources = ", ".join(s.dataset for s in data_cfg.sources) or "its inputs"
            line = f"{stage}: skipped, no training tokens in {sources} (nothing passed the earlier stages)"
            from textbooklm.progress import summary_line

            summary_line(line)
            return _finish(out, [{"step": 0.0}], stage, ctx, parents, line)
    else:
        packs = [d.path for d in inputs.values() if _is_pack(d)]
        if not packs:
            raise FileNotFoundError(f"{stage}: no token pack among the inputs ({sorted(inputs)}) and no data section")
        data_dir = packs[0]
    tokenizer_json = Path(json.loads((data_dir / "index.json").read_text()).get("tokenizer") or "")
    if cfg.init_from is None:
        runs = [d.path / "train" for d in inputs.values() if _is_run(d)]
        if runs:
            cfg = cfg.model_copy(update={"init_from": str(runs[0])})
    elif not Path(cfg.init_from).exists():
        cfg = cfg.model_copy(update={"init_from": str(resolve_dataset(cfg.init_from, inputs, ctx).path / "train")})
    summary = train(cfg, data_dir, out / "train", tokenizer_json if tokenizer_json.is_file() else None)
    rows = [{k: (float(v) if v not in ("", None) else None) for k, v in r.items()} for r in read_metrics(out / "train")]
    line = summary.get("line", f"{stage}: done")
    return _finish(out, rows or [{"step": 0.0}], stage, ctx, parents, line)


def run_pretrain(cfg: TrainConfig, inputs: dict[str, Dataset], out: Path, ctx: Any = None) -> Dataset:
    """Pretrain on the pack input; the run (checkpoints, metrics, TensorBoard) is ``out/train``."""
    return _train_stage(cfg, inputs, out, ctx, "pretrain")


def run_finetune(cfg: TrainConfig, inputs: dict[str, Dataset], out: Path, ctx: Any = None) -> Dataset:
    """Finetune the pretrain input's checkpoint (or ``init_from``) on exercises packed from ``cfg.data``."""
    return _train_stage(cfg, inputs, out, ctx, "finetune")
