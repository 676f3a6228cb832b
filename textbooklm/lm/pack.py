"""Token packing: documents -> end-of-text-joined token shards the trainer memory-maps.

Layout of a pack folder::

    index.json                dtype, vocab, eot id, shards and counts per split, the realized mixture
                              (tokens, epochs and cap per source), warnings
    documents.parquet         one row per input document: source, id, split, tokens, and how many
                              times it was packed into train and into validation
    train/tokens-00000.bin    uint16 (uint32 when the vocabulary needs it), raw, memory-mappable
    train/mask-00000.bin      uint8 loss mask (1 = train on this token), only for prompt/completion data
    val/...

Why this way: a flat memmap makes a batch a slice (no parsing, no per-document padding), and
joining documents with ``<|endoftext|>`` is what GPT-2 / phi pretraining did. The train/validation
split is decided per *document* by a hash of its text, so a document is never on both sides and the
split does not change when other documents are added. Mixture weights are token shares: the
packer draws documents of each source (repeating a source in reshuffled epochs only when asked
for more tokens than it has, at most ``max_epochs`` times: see ``textbooklm.lm.mixture``) and
interleaves them in a seeded random order. Repetition is reported, never hidden: epochs per source
in the index and the summary line, copies per document in ``documents.parquet``.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from textbooklm.lm.mixture import SourceBudget, allocate
from textbooklm.model.tokenizer import TextTokenizer
from textbooklm.progress import progress_bar, summary_line
from textbooklm.record import is_heldout_exercise, is_validation
from textbooklm.store import Dataset, atomic_write_json, write_table

INDEX = "index.json"
DOCUMENTS = "documents.parquet"
FORMAT = "textbooklm.pack/1"


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 65536 else np.dtype(np.uint32)


@dataclass
class _SourceTokens:
    """One source tokenized into a scratch stream per split: tokens, mask, document offsets."""

    name: str
    weight: float
    tokens: dict[str, np.ndarray]
    masks: dict[str, np.ndarray | None]
    offsets: dict[str, np.ndarray]  # len = documents + 1
    ids: list[str | None]  # each document's ``id`` (None: the dataset has no id column), in dataset order
    is_val: np.ndarray  # bool per document in dataset order: held out for validation

    def n_tokens(self, split: str) -> int:
        return int(self.offsets[split][-1])

    def n_docs(self, split: str) -> int:
        return len(self.offsets[split]) - 1


def _documents(ds: Dataset, text_column: str, loss_on: str) -> tuple[str, Iterator[list[dict]]]:
    """('text' | 'exercise', batches of records) after checking the dataset's columns.

    The ``id`` column comes along when there is one, for the per-document table.
    """
    schema = ds.schema()
    if schema is None:
        if ds.is_finished and ds.num_rows == 0:  # an empty stage output (e.g. no verified exercises)
            return "text", iter(())
        raise ValueError(f"{ds.path}: dataset has no shards")
    names = set(schema.names)
    if {"prompt", "completion"} <= names:
        # id and provenance decide the exercise's side of the split (record.is_heldout_exercise: by source file)
        cols = ["prompt", "completion", *(c for c in ("id", "provenance") if c in names)]
        return "exercise", (b.to_pylist() for b in ds.iter_batches(columns=cols, batch_size=512))
    if text_column in names:
        cols = [text_column, *(["id"] if "id" in names and text_column != "id" else [])]
        return "text", (b.to_pylist() for b in ds.iter_batches(columns=cols, batch_size=512))
    raise ValueError(f"{ds.path}: needs a {text_column!r} column or 'prompt' and 'completion' columns "
                     f"(has {sorted(names)})")


def _tokenize_source(
    name: str, ds: Dataset, weight: float, tok: TextTokenizer, work: Path, text_column: str,
    loss_on: str, val_fraction: float,
) -> _SourceTokens:
    kind, batches = _documents(ds, text_column, loss_on)
    dtype = token_dtype(tok.vocab_size)
    with_mask = kind == "exercise" and loss_on == "completion"
    files = {s: open(work / f"{name}-{s}.tok", "wb") for s in ("train", "val")}  # noqa: SIM115
    mfiles = {s: open(work / f"{name}-{s}.mask", "wb") for s in ("train", "val")} if with_mask else None  # noqa: SIM115
    lengths: dict[str, list[int]] = {"train": [], "val": []}
    ids_of: list[str | None] = []
    is_val: list[bool] = []
    try:
        with progress_bar(f"pack {name}", ds.num_rows if ds.is_finished else None) as advance:
            for batch in batches:
                if kind == "text":
                    texts = [r[text_column] or "" for r in batch]
                    ids = tok.encode_batch(texts)
                    docs = [(t, i + [tok.eot_id], None) for t, i in zip(texts, ids, strict=True)]
                else:
                    prompts = tok.encode_batch([r["prompt"] or "" for r in batch])
                    comps = tok.encode_batch([r["completion"] or "" for r in batch])
                    docs = []
                    for r, p, c in zip(batch, prompts, comps, strict=True):
                        ids = p + c + [tok.eot_id]
                        mask = [0] * len(p) + [1] * (len(c) + 1)
                        docs.append((r, ids, mask))
                for doc, ids, mask in docs:
                    held = (is_heldout_exercise(doc, val_fraction) if isinstance(doc, dict)
                            else is_validation(doc, val_fraction))
                    split = "val" if held else "train"
                    files[split].write(np.asarray(ids, dtype=dtype).tobytes())
                    if mfiles is not None:
                        mfiles[split].write(np.asarray(mask, dtype=np.uint8).tobytes())
                    lengths[split].append(len(ids))
                    is_val.append(split == "val")
                ids_of.extend(None if r.get("id") is None else str(r["id"]) for r in batch)
                advance(len(batch))
    finally:
        for f in (*files.values(), *(mfiles or {}).values()):
            f.close()
    out = _SourceTokens(name, weight, {}, {}, {}, ids_of, np.asarray(is_val, dtype=bool))
    for s in ("train", "val"):
        out.offsets[s] = np.concatenate([[0], np.cumsum(np.asarray(lengths[s], dtype=np.int64))])
        out.tokens[s] = (np.memmap(work / f"{name}-{s}.tok", dtype=dtype, mode="r")
                         if out.n_tokens(s) else np.zeros(0, dtype))
        out.masks[s] = None
        if with_mask:
            out.masks[s] = (np.memmap(work / f"{name}-{s}.mask", dtype=np.uint8, mode="r")
                            if out.n_tokens(s) else np.zeros(0, np.uint8))
    return out


def _draw(src: _SourceTokens, target: int, rng: np.random.Generator, at_most: bool = False) -> np.ndarray:
    """Document ids of ``src`` (train split) totalling at least ``target`` tokens; reshuffled per epoch.

    Whole passes over the documents, then part of one, so no document is drawn more than
    ``ceil(target / tokens)`` times. The last document may overshoot ``target``; with ``at_most``
    (a source at its ``max_epochs`` cap) the partial pass stops before it instead, so the cap holds
    in tokens even when one document is a large part of a small source.
    """
    n = src.n_docs("train")
    lengths = np.diff(src.offsets["train"])
    chosen: list[np.ndarray] = []
    total = 0
    while total < target and n:
        perm = rng.permutation(n)
        cum = np.cumsum(lengths[perm])
        need = target - total
        if at_most:
            k = int(np.searchsorted(cum, need, side="right"))
            if k == 0:
                break
        else:
            k = min(int(np.searchsorted(cum, need, side="left")) + 1, n)
        chosen.append(perm[:k])
        total += int(cum[k - 1])
    return np.concatenate(chosen) if chosen else np.zeros(0, np.int64)


class _ShardWriter:
    def __init__(self, folder: Path, dtype: np.dtype, with_mask: bool, tokens_per_shard: int):
        self.folder, self.dtype, self.with_mask, self.cap = folder, dtype, with_mask, tokens_per_shard
        folder.mkdir(parents=True, exist_ok=True)
        self.shards: list[dict] = []
        self._tok: list[np.ndarray] = []
        self._mask: list[np.ndarray] = []
        self._n = 0

    def add(self, tokens: np.ndarray, mask: np.ndarray | None) -> None:
        while len(tokens):
            room = self.cap - self._n
            self._tok.append(np.asarray(tokens[:room]))
            if self.with_mask:
                self._mask.append(np.asarray(mask[:room]))  # type: ignore[index]
                mask = mask[room:]  # type: ignore[index]
            self._n += len(self._tok[-1])
            tokens = tokens[room:]
            if self._n >= self.cap:
                self.flush()

    def flush(self) -> None:
        if not self._n:
            return
        i = len(self.shards)
        name = f"tokens-{i:05d}.bin"
        np.concatenate(self._tok).astype(self.dtype).tofile(self.folder / name)
        entry = {"tokens": f"{self.folder.name}/{name}", "n": self._n}
        if self.with_mask:
            mname = f"mask-{i:05d}.bin"
            np.concatenate(self._mask).astype(np.uint8).tofile(self.folder / mname)
            entry["mask"] = f"{self.folder.name}/{mname}"
        self.shards.append(entry)
        self._tok, self._mask, self._n = [], [], 0


def _per_source_caps(max_epochs: float | Sequence[float | None] | None, n: int) -> list[float]:
    """``max_epochs`` as one cap per source (None: no cap, ``math.inf``)."""
    if max_epochs is None or isinstance(max_epochs, (int, float)):
        caps = [max_epochs] * n
    else:
        caps = list(max_epochs)
        if len(caps) != n:
            raise ValueError(f"pack: {len(caps)} max_epochs for {n} sources")
    out = [math.inf if c is None else float(c) for c in caps]
    if any(c <= 0 for c in out):
        raise ValueError(f"pack: max_epochs must be > 0, got {caps}")
    return out


def _realized(t: _SourceTokens, budget: SourceBudget, docs: np.ndarray) -> tuple[dict, np.ndarray]:
    """What one source put into the train stream, and the copies of each of its train documents."""
    copies = np.bincount(docs, minlength=t.n_docs("train")) if t.n_docs("train") else np.zeros(0, np.int64)
    tokens = int(np.diff(t.offsets["train"])[docs].sum()) if len(docs) else 0
    available = t.n_tokens("train")
    return {
        "tokens": tokens,
        "documents": int(len(docs)),  # copies, counting repeats
        "unique_documents": int((copies > 0).sum()),
        "epochs": tokens / available if available else 0.0,  # packed tokens / the source's train tokens
        "max_copies": int(copies.max()) if len(copies) else 0,  # most times one document was packed
        "asked_tokens": round(budget.asked),  # its weight's share of the requested total
        "asked_epochs": budget.asked / available if available else (None if budget.asked else 0.0),  # None: inf
        "max_epochs": budget.max_epochs if math.isfinite(budget.max_epochs) else None,
        "capped": budget.capped,  # its weight asked more than max_epochs allows
        "at_cap": budget.at_cap,  # packed up to its cap (capped, or filled there by others' freed tokens)
    }, copies


def _documents_table(sources: list[tuple[str, Dataset, float]], toks: list[_SourceTokens],
                     copies: list[np.ndarray]) -> pa.Table:
    """One row per input document: where it went and how many times it was packed (``documents.parquet``).

    Why: "why is this sample here?" must reach the training data. A document's row says whether it
    was packed into train (``packed_train`` copies, repeats included) or held out (``packed_val``).
    """
    cols: dict[str, list] = {k: [] for k in ("source", "id", "row", "split", "tokens", "packed_train", "packed_val")}
    for (name, _, _), t, c in zip(sources, toks, copies, strict=True):
        n = len(t.is_val)
        pos = {"train": 0, "val": 0}
        for row in range(n):
            split = "val" if t.is_val[row] else "train"
            k = pos[split]
            pos[split] += 1
            cols["source"].append(name)
            cols["id"].append(t.ids[row] if row < len(t.ids) else None)
            cols["row"].append(row)
            cols["split"].append(split)
            cols["tokens"].append(int(t.offsets[split][k + 1] - t.offsets[split][k]))
            cols["packed_train"].append(int(c[k]) if split == "train" else 0)
            cols["packed_val"].append(1 if split == "val" else 0)
    schema = pa.schema([("source", pa.string()), ("id", pa.string()), ("row", pa.int64()), ("split", pa.string()),
                        ("tokens", pa.int64()), ("packed_train", pa.int64()), ("packed_val", pa.int64())])
    return pa.table(cols, schema=schema)


def _cap_text(source: dict) -> str:
    """Why a capped source got less than its weight asked: its cap, or nothing to give."""
    p = source["packed"]
    if not source["train_tokens"]:
        return "it has no train tokens"
    return f"capped at max_epochs {p['max_epochs']:g}: its weight asked {p['asked_epochs']:.1f} epochs"


def _mixture_line(index: dict) -> str:
    tr, va = index["splits"]["train"], index["splits"]["val"]
    parts = []
    for s in index["sources"]:
        p = s["packed"]
        part = (f"{s['dataset']} {p['tokens'] / max(tr['tokens'], 1):.1%} "
                f"({p['tokens']:,} tokens, {p['epochs']:.2f} epochs")
        if p["capped"]:
            part += ", " + _cap_text(s)
        elif p["at_cap"]:
            part += f", filled to its max_epochs {p['max_epochs']:g} by others' freed tokens"
        parts.append(part + ")")
    # "copies": a document repeated for its source's epochs counts once per copy (the ledger's kept counts
    # each document once, so "docs" here read as a contradiction of it)
    line = (f"pack: {tr['tokens']:,} train tokens ({tr['documents']:,} document copies, {len(tr['shards'])} "
            f"shard{'s' * (len(tr['shards']) != 1)}), {va['tokens']:,} validation tokens ({va['documents']:,} "
            f"docs); mixture {', '.join(parts)}")
    if tr["tokens"] < index["asked_train_tokens"] and all(s["packed"]["at_cap"] for s in index["sources"]):
        line += f"; asked {index['asked_train_tokens']:,} train tokens, every source is at its cap"
    elif tr["tokens"] < index["asked_train_tokens"]:
        line += f"; asked {index['asked_train_tokens']:,} train tokens"
    return line


def _cap_warnings(index: dict) -> list[str]:
    capped = [s for s in index["sources"] if s["packed"]["capped"]]
    free = [s["dataset"] for s in index["sources"] if not s["packed"]["at_cap"]]
    out = []
    for s in capped:
        p = s["packed"]
        asked = f"{s['dataset']}: its weight {s['weight']:g} asked {p['asked_tokens']:,} train tokens"
        if not s["train_tokens"]:
            why = f"{asked}, but it has no train tokens"
        else:
            why = (f"{asked}, {p['asked_epochs']:.1f} epochs of its {s['train_tokens']:,}; capped at max_epochs "
                   f"{p['max_epochs']:g} ({p['tokens']:,} tokens packed)")
        out.append(f"{why}; " + (f"the rest went to {', '.join(free)} by weight" if free
                                 else "no source had room for the rest"))
    return out


def pack(
    sources: list[tuple[str, Dataset, float]],
    tok: TextTokenizer,
    out: Path,
    *,
    text_column: str = "text",
    loss_on: str = "all",
    val_fraction: float = 0.02,
    total_tokens: int | None = None,
    max_epochs: float | Sequence[float | None] | None = None,
    tokens_per_shard: int = 50_000_000,
    seed: int = 0,
    tokenizer_path: str | None = None,
    announce: bool = True,
) -> dict:
    """Pack ``sources`` (name, dataset, weight) into ``out``; returns the index (also written).

    ``max_epochs`` caps how many times a source's train tokens are packed (one value, or one per
    source; None: no cap, as a library default so existing callers such as the ablation keep their
    packs; the pipeline's ``[pack]`` defaults to 4). A capped source's tokens go to the others by
    weight (``textbooklm.lm.mixture``). ``announce=False``: the caller prints the line (the pack stage
    prints its ledger's, which holds this one); warnings are printed either way.
    """
    if not sources:
        raise ValueError("pack: no input datasets")
    caps = _per_source_caps(max_epochs, len(sources))
    out = Path(out)
    for sub in ("train", "val", "_work"):
        shutil.rmtree(out / sub, ignore_errors=True)
    (out / INDEX).unlink(missing_ok=True)
    (out / DOCUMENTS).unlink(missing_ok=True)
    work = out / "_work"
    work.mkdir(parents=True)
    dtype = token_dtype(tok.vocab_size)
    toks = [_tokenize_source(f"src{i}", ds, w, tok, work, text_column, loss_on, val_fraction)
            for i, (_, ds, w) in enumerate(sources)]
    with_mask = any(t.masks["train"] is not None for t in toks)
    weights = [t.weight for t in toks]
    avail = [t.n_tokens("train") for t in toks]
    if total_tokens is None:
        # The most tokens the weights allow while every source is used at most once.
        total_w = sum(weights)
        total_tokens = int(min(a / (w / total_w) for a, w in zip(avail, weights, strict=True)))
        caps = [min(c, 1.0) for c in caps]
    budgets = allocate(weights, avail, caps, total_tokens)
    rng = np.random.default_rng(seed)
    drawn: dict[int, np.ndarray] = {}
    # Capped sources first: their last pass stops short of the cap by part of a document, and that
    # shortfall goes to the uncapped sources by weight too (with no cap binding, this is one loop in order).
    for i in (i for i, b in enumerate(budgets) if b.at_cap):
        drawn[i] = _draw(toks[i], int(budgets[i].target), rng, at_most=True)
    free = [i for i, b in enumerate(budgets) if not b.at_cap]
    short = sum(budgets[i].target - np.diff(toks[i].offsets["train"])[d].sum() for i, d in drawn.items())
    free_w = sum(weights[i] for i in free)
    for i in free:
        extra = short * weights[i] / free_w if free_w and short > 0 else 0.0
        drawn[i] = _draw(toks[i], int(round(budgets[i].target + extra)), rng)
    picks, realized, copies = [], [], []
    for i, (t, budget) in enumerate(zip(toks, budgets, strict=True)):
        docs = drawn[i]
        picks.append(np.stack([np.full(len(docs), i, np.int64), docs], axis=1))
        r, c = _realized(t, budget, docs)
        realized.append(r)
        copies.append(c)
    order = np.concatenate(picks) if picks else np.zeros((0, 2), np.int64)
    order = order[rng.permutation(len(order))]
    index: dict = {"format": FORMAT, "dtype": dtype.name, "vocab_size": tok.vocab_size, "eot_id": tok.eot_id,
                   "has_mask": with_mask, "tokenizer": tokenizer_path, "seed": seed, "val_fraction": val_fraction,
                   "asked_train_tokens": int(total_tokens), "documents_table": DOCUMENTS, "splits": {}}
    for split, docs_of in (("train", order), ("val", None)):
        writer = _ShardWriter(out / split, dtype, with_mask, tokens_per_shard)
        if docs_of is None:  # validation: every held-out document of every source, in source order
            docs_of = np.concatenate([np.stack([np.full(t.n_docs("val"), i, np.int64), np.arange(t.n_docs("val"))], 1)
                                      for i, t in enumerate(toks)])
        for s, d in docs_of:
            t = toks[s]
            a, b = t.offsets[split][d], t.offsets[split][d + 1]
            m = t.masks[split]
            mask = (m[a:b] if m is not None else np.ones(b - a, np.uint8)) if with_mask else None
            writer.add(t.tokens[split][a:b], mask)
        writer.flush()
        index["splits"][split] = {"shards": writer.shards, "tokens": sum(s["n"] for s in writer.shards),
                                  "documents": int(len(docs_of))}
    index["sources"] = [
        {"dataset": name, "weight": w, "share": b.share, "train_documents": t.n_docs("train"),
         "train_tokens": t.n_tokens("train"), "val_documents": t.n_docs("val"), "val_tokens": t.n_tokens("val"),
         "packed": r}
        for (name, _, w), t, b, r in zip(sources, toks, budgets, realized, strict=True)
    ]
    index["warnings"] = _cap_warnings(index)
    index["line"] = _mixture_line(index)
    write_table(out / DOCUMENTS, _documents_table(sources, toks, copies))
    del toks
    shutil.rmtree(work, ignore_errors=True)
    atomic_write_json(out / INDEX, index)  # last: a folder with index.json is a finished pack
    if announce:
        summary_line(index["line"])
    for warning in index["warnings"]:
        summary_line(f"pack: warning: {warning}")
    return index


class PackedTokens:
    """One split of a pack as fixed-length training sequences (``seq_len + 1`` tokens, no shard crossing)."""

    def __init__(self, folder: str | Path, split: str, seq_len: int):
        self.folder = Path(folder)
        try:
            self.index = json.loads((self.folder / INDEX).read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.folder}: not a token pack (no {INDEX}); run `textbooklm pack`") from None
        dtype = np.dtype(self.index["dtype"])
        self.seq_len = seq_len
        self.tokens, self.masks, starts = [], [], []
        for i, shard in enumerate(self.index["splits"][split]["shards"]):
            self.tokens.append(np.memmap(self.folder / shard["tokens"], dtype=dtype, mode="r"))
            self.masks.append(np.memmap(self.folder / shard["mask"], dtype=np.uint8, mode="r")
                              if "mask" in shard else None)
            n_seq = (shard["n"] - 1) // seq_len
            starts.append(np.stack([np.full(n_seq, i, np.int64), np.arange(n_seq) * seq_len], 1))
        self.starts = np.concatenate(starts) if starts else np.zeros((0, 2), np.int64)

    def __len__(self) -> int:
        return len(self.starts)

    def get(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Inputs, targets (int64, (n, seq_len)) and the targets' loss mask (uint8) of sequences ``ids``."""
        T = self.seq_len
        rows = np.empty((len(ids), T + 1), np.int64)
        mask = np.ones((len(ids), T), np.uint8)
        for r, j in enumerate(ids):
            s, a = self.starts[j]
            rows[r] = self.tokens[s][a : a + T + 1]
            if self.masks[s] is not None:
                mask[r] = self.masks[s][a + 1 : a + T + 1]
        return rows[:, :-1], rows[:, 1:], mask
