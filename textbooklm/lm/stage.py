"""Pipeline stages of the model area: ``tokenizer``, ``pack``, ``pretrain``, ``finetune``.

Each is ``run(config_section, inputs, out, ctx) -> Dataset``. The output Dataset is a small table
(what was built, with its numbers); the artefacts sit beside it in ``out``: ``tokenizer.json``, the
token pack (``index.json`` + shards), or the training run (``train/`` with checkpoints, metrics.csv,
TensorBoard). Inputs are found by what they hold, not by their stage names: the input folder with a
``tokenizer.json`` is the tokenizer, the one with ``index.json`` the pack, the one with a ``train/``
run the checkpoint to finetune from; every other input is data.

Each records what it did in its stage ledger (:mod:`textbooklm.ledger`), from which the summary's
``counts`` and ``line`` and ``rejected/`` derive: the tokenizer its documents (trained on, or left out
as held-out exercises), the pack (and finetuning's own pack) its documents (packed, or not drawn by the
mixture), training its ``steps`` and ``tokens``. These are not record stages (``status`` shows no
in/kept for them); a stage that decided about no input (pretraining, a codegen tokenizer) has the line
``stage: <its own words>`` instead of "0 in -> 0 kept".
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from textbooklm.ledger import StageLedger
from textbooklm.lm.config import PackConfig, TokenizerConfig, TrainConfig
from textbooklm.progress import summary_line
from textbooklm.stage_context import StageContext
from textbooklm.store import Dataset, finish_dataset, records_to_table, shard_name, write_table

# Rejected rows: a tokenizer's documents left out, a pack's documents the mixture did not draw.
TOKENIZER_REJECTED = pa.schema([("dataset", pa.string()), ("id", pa.string()), ("row", pa.int64())])
PACK_REJECTED = pa.schema([("source", pa.string()), ("id", pa.string()), ("row", pa.int64()),
                           ("tokens", pa.int64())])
OWN_PACK = "documents read into its own pack"  # a training stage's "in": finetuning packs its exercises


def stage_ledger(ctx: StageContext | None, stage: str, out: Path, in_means: str,
                 schema: pa.Schema | None = None) -> StageLedger:
    """The stage's ledger, kept in ``out``: the run's (``ctx.ledger``), or for a standalone command
    (``textbooklm tokenizer`` / ``pack``, no run and no context) a ledger of that folder."""
    if ctx is None:
        return StageLedger(stage, Path(out), in_means, schema)
    ledger = ctx.ledger(in_means, schema)
    if ledger.folder.resolve() != Path(out).resolve():
        raise ValueError(f"{stage}: asked to write into {out}, but this run's {stage} folder is {ledger.folder}")
    return ledger


def _finish(out: Path, rows: list[dict[str, Any]], ledger: StageLedger, parents: list[Dataset], tail: str,
            **fields: Any) -> Dataset:
    """The ledger's summary (counts, line; ``rejected/``) on the stage's small table; the line is printed."""
    summary = ledger.finish(tail=tail, parents=tuple(str(p.path) for p in parents), **fields)
    summary_line(summary["line"])
    for old in Dataset(out).shards():
        old.unlink()
    write_table(out / shard_name(0), records_to_table(rows))
    return finish_dataset(out, stage=ledger.stage, config_hash=ledger.config_hash,
                          parents=[str(p.path) for p in parents], summary=summary)


def _is_tokenizer(ds: Dataset) -> bool:
    return (ds.path / "tokenizer.json").is_file() and not (ds.path / "train").exists()


def _is_pack(ds: Dataset) -> bool:
    return (ds.path / "index.json").is_file()


def _is_run(ds: Dataset) -> bool:
    return (ds.path / "train" / "latest.json").is_file()


def _data_inputs(inputs: dict[str, Dataset]) -> dict[str, Dataset]:
    return {k: v for k, v in inputs.items() if not (_is_tokenizer(v) or _is_pack(v) or _is_run(v))}


def resolve_dataset(name: str, inputs: dict[str, Dataset], ctx: StageContext | None) -> Dataset:
    """A dataset by name: an input, else through the run's naming rule (filtered, decontaminated), else a path."""
    if name in inputs:
        return inputs[name]
    if ctx is not None:
        return ctx.dataset(name)
    if Path(name).is_dir():
        return Dataset(name)
    raise FileNotFoundError(f"dataset {name!r}: not an input stage ({sorted(inputs)}) nor a folder")


def default_sources(inputs: dict[str, Dataset], ctx: StageContext | None,
                    kind: str | None) -> list[tuple[str, Dataset]]:
    """The training datasets a stage uses when its config names none, from the registry.

    ``kind`` is ``pretrain`` (filtered code, textbooks), ``finetune`` (exercises) or None (all). With a
    filter, the corpus is the filtered one; with decontam, every dataset is its cleaned copy.
    """
    if ctx is not None:
        return [(n, resolve_dataset(n, inputs, ctx)) for n in ctx.training_sources(kind)]
    return list(_data_inputs(inputs).items())


def _find_tokenizer(explicit: str | None, inputs: dict[str, Dataset], ctx: StageContext | None) -> Path:
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


def run_tokenizer(cfg: TokenizerConfig, inputs: dict[str, Dataset], out: Path,
                  ctx: StageContext | None = None) -> Dataset:
    """Build (codegen) or train (bpe) the tokenizer; writes ``out/tokenizer.json``.

    Ledger: each document read to train on is kept, a held-out exercise read is dropped
    (``heldout-exercise``); codegen reads none. Documents past ``max_documents`` are not read.
    """
    from textbooklm.model.tokenizer import codegen_tokenizer, train_bpe

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = [resolve_dataset(s, inputs, ctx) for s in cfg.sources] or [d for _, d in default_sources(inputs, ctx, None)]
    ledger = stage_ledger(ctx, "tokenizer", out, "documents read", TOKENIZER_REJECTED)
    if cfg.kind == "codegen":
        ledger.forget(set())
        tok = codegen_tokenizer(cfg.gpt2_files)
        docs = 0
    else:
        if not data:
            raise ValueError("tokenizer: kind 'bpe' is trained on data, but the stage has no input datasets")
        parts = [ledger.shard(shard_name(i)) for i in range(len(data))]
        ledger.forget({p.key for p in parts})
        count = {"docs": 0}

        def texts() -> Iterator[str]:
            for ds, part in zip(data, parts, strict=True):
                def left_out(rec: dict[str, Any], row: int, part=part, ds=ds) -> None:
                    part.drop({"dataset": str(ds.path), "id": rec.get("id"), "row": row}, "heldout-exercise",
                              "held out of training by decontam (finetuning's validation, eval's held-out set)")

                for text in document_texts(ds, left_out):
                    if count["docs"] >= cfg.max_documents:
                        return
                    count["docs"] += 1
                    part.keep()
                    yield text

        tok = train_bpe(texts(), cfg.vocab_size)
        docs = count["docs"]
        for part in parts:
            part.close()
    tok.save(out / "tokenizer.json")
    capped = cfg.kind == "bpe" and docs >= cfg.max_documents
    tail = (f"{cfg.kind}, {tok.vocab_size:,} tokens"
            + (f", trained on {docs:,} documents" + (" (max_documents reached)" if capped else "")
               if cfg.kind == "bpe" else ", built (not trained on data)")
            + f" -> {out / 'tokenizer.json'}")
    rows = [{"kind": cfg.kind, "vocab_size": tok.vocab_size, "eot_id": tok.eot_id, "documents": docs,
             "path": "tokenizer.json"}]
    return _finish(out, rows, ledger, data, tail, kind=cfg.kind, vocab_size=tok.vocab_size, documents=docs)


def document_texts(ds: Dataset, left_out: Callable[[dict[str, Any], int], None] | None = None) -> Iterator[str]:
    """Each record's training text: ``text``, or ``prompt + completion`` for exercises.

    Exercises that decontam marked held out (provenance ``decontam.split``) are left out (``left_out``
    is told each, with its row): they stay in the cleaned exercises only to be finetuning's validation
    split and eval's held-out set, and a tokenizer trained on them would have read them.
    """
    names = set(ds.schema().names) if ds.schema() is not None else set()
    if {"prompt", "completion"} <= names:
        from textbooklm.record import provenance

        cols = ["prompt", "completion", *(c for c in ("id", "provenance") if c in names)]
        for row, r in enumerate(ds.iter_records(columns=cols)):
            if (provenance(r).get("decontam") or {}).get("split") == "heldout":
                if left_out is not None:
                    left_out(r, row)
                continue
            yield (r["prompt"] or "") + (r["completion"] or "")
    elif "text" in names:
        for r in ds.iter_records(columns=["text"]):
            yield r["text"] or ""
    elif ds.is_finished and ds.num_rows == 0:  # an empty stage output (e.g. no verified exercises)
        return
    else:
        raise ValueError(f"{ds.path}: no 'text' column nor 'prompt'/'completion' columns to train a tokenizer on")


def _pack_sources(cfg: PackConfig, inputs: dict[str, Dataset], out: Path, ctx: StageContext | None,
                  kind: str) -> tuple[dict[str, Any], list[tuple[str, Dataset, float]]]:
    """Tokenize and pack the mixture into ``out`` (``index.json``, ``documents.parquet`` + shards).

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
                 tokens_per_shard=cfg.tokens_per_shard, seed=cfg.seed, tokenizer_path=str(tok_path), announce=False)
    return index, sources


def record_pack(ledger: StageLedger, pack_dir: Path, first: int = 0) -> set[str]:
    """Each input document of the pack in ``pack_dir`` as a verdict, one shard ledger per source.

    Kept: packed into train (at least one copy) or held out into validation. Dropped (``not-drawn``):
    a train document the mixture took no copy of (its source gave fewer tokens than it holds). Read
    back from ``documents.parquet``, so the verdicts are what the pack holds. Returns the shard keys.
    """
    from textbooklm.lm.pack import DOCUMENTS, INDEX

    index = json.loads((pack_dir / INDEX).read_text())
    docs = pq.read_table(pack_dir / DOCUMENTS).to_pylist()
    keys, start = set(), 0
    for i, src in enumerate(index["sources"]):
        n = int(src["train_documents"]) + int(src["val_documents"])
        rows, start = docs[start:start + n], start + n
        packed = src["packed"]
        part = ledger.shard(shard_name(first + i))
        detail = (f"{src['dataset']}: the mixture packed {packed['tokens']:,} of its {src['train_tokens']:,} train "
                  f"tokens ({packed['epochs']:.2f} epochs) and drew no copy of this document")
        for r in rows:
            if r["split"] == "train" and not r["packed_train"]:
                part.drop({"source": r["source"], "id": r["id"], "row": r["row"], "tokens": r["tokens"]},
                          "not-drawn", detail)
            else:
                part.keep()
        part.count("packed_tokens", int(packed["tokens"]))
        part.count("val_tokens", int(src["val_tokens"]))
        part.close()
        keys.add(part.key)
    if start != len(docs):
        raise ValueError(f"{pack_dir / DOCUMENTS}: {len(docs)} documents, but {INDEX}'s sources count {start}")
    return keys


def run_pack(cfg: PackConfig, inputs: dict[str, Dataset], out: Path, ctx: StageContext | None = None,
             kind: str = "pretrain") -> Dataset:
    """Tokenize and pack the mixture into ``out``; its documents (packed or not drawn) go to the ledger."""
    out = Path(out)
    index, sources = _pack_sources(cfg, inputs, out, ctx, kind)
    ledger = stage_ledger(ctx, "pack", out, "documents read", PACK_REJECTED)
    ledger.forget(record_pack(ledger, out))
    rows = [{"dataset": s["dataset"], "weight": s["weight"], "share": s["share"],
             "train_tokens_available": s["train_tokens"], "train_tokens_packed": s["packed"]["tokens"],
             "epochs": s["packed"]["epochs"], "max_epochs": s["packed"]["max_epochs"], "capped": s["packed"]["capped"],
             "val_tokens": s["val_tokens"]} for s in index["sources"]]
    tr = index["splits"]["train"]
    summary = {"tokens": tr["tokens"], "asked_train_tokens": index["asked_train_tokens"],
               "train tokens by source": {s["dataset"]: s["packed"]["tokens"] for s in index["sources"]},
               "epochs by source": {s["dataset"]: round(s["packed"]["epochs"], 3) for s in index["sources"]},
               "warnings": index["warnings"]}
    return _finish(out, rows, ledger, [d for _, d, _ in sources], index["line"].removeprefix("pack: "), **summary)


def _train_stage(cfg: TrainConfig, inputs: dict[str, Dataset], out: Path, ctx: StageContext | None,
                 stage: str) -> Dataset:
    """Train (pretraining on its pack input; finetuning on exercises it packs itself into ``out/data``).

    Ledger: the documents of its own pack, when it packs one (as the pack stage records them), and the
    counters ``steps`` and ``tokens`` (trained on, resumed runs included).
    """
    from textbooklm.lm.train import train
    from textbooklm.model.train_log import read_metrics

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    parents = list(inputs.values())
    keys: set[str] = set()
    if cfg.data is not None:
        # Pack inside the stage (finetuning exercises); the pack is kept under out/data.
        data_cfg = cfg.data
        if cfg.loss_on == "completion":
            data_cfg = data_cfg.model_copy(update={"loss_on": "completion"})
        data_dir = out / "data"
        index, _ = _pack_sources(data_cfg, inputs, data_dir, ctx, kind="finetune")
        ledger = stage_ledger(ctx, stage, out, OWN_PACK, PACK_REJECTED)
        keys = record_pack(ledger, data_dir)
        splits = index["splits"]
        if splits["train"]["tokens"] == 0:
            # e.g. a weak offline teacher whose exercises all failed verification: say so, train nothing.
            ledger.forget(keys)
            sources = ", ".join(s.dataset for s in data_cfg.sources) or "its inputs"
            why = (f"all {splits['val']['documents']:,} documents are held out for validation" if
                   splits["val"]["documents"] else "nothing passed the earlier stages")
            return _finish(out, [{"step": 0.0}], ledger, parents,
                           f"skipped, no training tokens in {sources} ({why})", steps=0, tokens=0)
    else:
        packs = [d.path for d in inputs.values() if _is_pack(d)]
        if not packs:
            raise FileNotFoundError(f"{stage}: no token pack among the inputs ({sorted(inputs)}) and no data section")
        data_dir = packs[0]
        ledger = stage_ledger(ctx, stage, out, OWN_PACK, PACK_REJECTED)  # none: it reads the pack stage's
    tokenizer_json = Path(json.loads((data_dir / "index.json").read_text()).get("tokenizer") or "")
    if cfg.init_from is None:
        runs = [d.path / "train" for d in inputs.values() if _is_run(d)]
        if runs:
            cfg = cfg.model_copy(update={"init_from": str(runs[0])})
    elif not Path(cfg.init_from).exists():
        cfg = cfg.model_copy(update={"init_from": str(resolve_dataset(cfg.init_from, inputs, ctx).path / "train")})
    result = train(cfg, data_dir, out / "train", tokenizer_json if tokenizer_json.is_file() else None,
                   announce=False)  # the stage prints its ledger's line, which holds this one
    part = ledger.shard(shard_name(len(keys)))  # after the pack's shards: training's counters
    part.count("steps", int(result["steps"]))
    part.count("tokens", int(result["tokens"]))
    part.close()
    ledger.forget(keys | {part.key})
    rows = [{k: (float(v) if v not in ("", None) else None) for k, v in r.items()} for r in read_metrics(out / "train")]
    trained = str(result.get("line") or "done").removeprefix("train: ")
    fields = {k: result.get(k) for k in ("steps", "tokens", "parameters", "final_loss", "final_val_loss", "checkpoint")}
    return _finish(out, rows or [{"step": 0.0}], ledger, parents, trained, trained=trained, **fields)


def run_pretrain(cfg: TrainConfig, inputs: dict[str, Dataset], out: Path, ctx: StageContext | None = None) -> Dataset:
    """Pretrain on the pack input; the run (checkpoints, metrics, TensorBoard) is ``out/train``."""
    return _train_stage(cfg, inputs, out, ctx, "pretrain")


def run_finetune(cfg: TrainConfig, inputs: dict[str, Dataset], out: Path, ctx: StageContext | None = None) -> Dataset:
    """Finetune the pretrain input's checkpoint (or ``init_from``) on exercises packed from ``cfg.data``."""
    return _train_stage(cfg, inputs, out, ctx, "finetune")
