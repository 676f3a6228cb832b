"""The ablation's data: each arm's token pack, the shared validation set, the held-out exercises.

Why one hash rule everywhere: every pack splits documents into train/validation by a hash of the
text (:func:`textbooklm.lm.pack.is_validation`), so with one ``val_fraction`` a held-out document is
held out of *every* arm's training data. The shared validation set is built from exactly those
documents, which makes the arms' validation losses comparable; the held-out exercises use the same
rule with their own fraction, so the finetuning arm never trains on the exercises it is scored on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from textbooklm import registry
from textbooklm.lm.pack import INDEX, is_validation, pack, token_dtype
from textbooklm.lm.stage import document_texts
from textbooklm.model.tokenizer import TextTokenizer
from textbooklm.problems import Problem
from textbooklm.record import is_heldout_exercise
from textbooklm.store import Dataset, atomic_write_json


def resolve_dataset(name: str, run_dir: Path, what: str, *, clean: bool = True, workers: int = 0) -> Dataset:
    """A run's dataset by stage name, through the run's naming rule, or a Dataset folder.

    Names mean exactly the stage named (``unfiltered``): arm A's "corpus" is the deduplicated,
    unfiltered corpus on purpose. Where decontam cleaned it, the cleaned copy. Where decontam ran but
    did not clean it (it cleans the filtered corpus, not the raw one), ``clean`` makes a copy cleaned
    with the run's decontam settings (:mod:`textbooklm.ablate.decontaminate`), so no arm trains on
    what the others may not; ``clean=False`` (the shared validation set: held-out documents, never
    trained on) uses the raw dataset and says so.
    """
    from textbooklm.ablate.decontaminate import decontaminated_copy
    from textbooklm.progress import console
    from textbooklm.run import Run

    run = Run(run_dir)
    try:
        ds = run.dataset(name, unfiltered=True)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{what}: {exc}") from None
    if not ds.path.is_dir():
        raise FileNotFoundError(f"{what}: dataset {name!r} is neither a stage of {run_dir} nor a folder")
    cleaner = registry.cleaner()
    if (cleaner is not None and run.state(cleaner.name) == "done" and name in registry.names()
            and ds.path.parent != run.stage_dir(cleaner.name) and registry.get(name).cleaned_by_decontam):
        if clean and run.cfg is not None and getattr(run.cfg, cleaner.name, None) is not None:
            return decontaminated_copy(name, ds, run, run_dir / "ablation" / "decontam", what, workers)
        console.print(f"[yellow]{what}: {name!r} is not decontaminated ({cleaner.name} did not clean it); "
                      f"using {ds.path}[/yellow]")
    return ds


def resolve_tokenizer(spec: str, run_dir: Path) -> Path:
    """``tokenizer.json`` from a file path, a stage name of the run, or a folder."""
    for candidate in (Path(spec), run_dir / spec / "tokenizer.json", Path(spec) / "tokenizer.json"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"tokenizer {spec!r}: no tokenizer.json as a file, in {run_dir / spec} or in {spec}; "
                            "run the pipeline's tokenizer stage or set ablate.tokenizer")


def fingerprint(ds: Dataset) -> dict[str, object]:
    """What identifies a dataset's content cheaply: its folder, row count and producing config."""
    manifest = ds.manifest if ds.is_finished else {}
    return {"path": str(ds.path.resolve()), "rows": ds.num_rows if ds.is_finished else None,
            "config_hash": manifest.get("config_hash")}


def pack_arm(sources: list[tuple[str, Dataset, float]], tok: TextTokenizer, tok_path: Path, out: Path, *,
             total_tokens: int | None, val_fraction: float, seed: int, loss_on: str = "all") -> dict:
    """Pack one arm's mixture (skipped when ``out`` already holds a finished pack)."""
    if (out / INDEX).is_file():
        return json.loads((out / INDEX).read_text())
    return pack(sources, tok, out, loss_on=loss_on, val_fraction=val_fraction, total_tokens=total_tokens,
                seed=seed, tokenizer_path=str(tok_path))


@dataclass
class ValidationSet:
    """The shared held-out tokens: ``n`` sequences of ``seq_len + 1`` tokens."""

    tokens: np.ndarray  # (n, seq_len + 1)
    sources: dict[str, int]  # tokens contributed per dataset

    @property
    def n_sequences(self) -> int:
        return int(self.tokens.shape[0])


def build_validation(datasets: list[tuple[str, Dataset]], tok: TextTokenizer, val_fraction: float,
                     n_sequences: int, seq_len: int, out: Path) -> ValidationSet:
    """Held-out documents of ``datasets`` (equal token shares, round robin) cut into sequences.

    Saved as ``out/tokens.bin`` + ``out/meta.json``; a finished folder is read back as it is.
    """
    meta_path = out / "meta.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        flat = np.fromfile(out / "tokens.bin", dtype=np.dtype(meta["dtype"]))
        return ValidationSet(flat.reshape(meta["n"], seq_len + 1).astype(np.int64), meta["sources"])
    need = n_sequences * (seq_len + 1)
    found: list[list[int]] = []
    for _, ds in datasets:
        got: list[int] = []
        if ds.is_finished and ds.num_rows:
            for text in document_texts(ds):
                if text and is_validation(text, val_fraction):
                    got.extend(tok.encode(text) + [tok.eot_id])
                    if len(got) >= need:
                        break
        found.append(got)
    quota = _equal_shares([len(g) for g in found], need)
    # Whole sequences per source, interleaved so that any prefix of the set mixes every source.
    per = [np.asarray(g[: q // (seq_len + 1) * (seq_len + 1)], np.int64).reshape(-1, seq_len + 1)
           for g, q in zip(found, quota, strict=True)]
    order = [(k, p[i]) for i in range(max(len(p) for p in per)) for k, p in enumerate(per) if i < len(p)]
    order = order[:n_sequences]
    if not order:
        names = ", ".join(n for n, _ in datasets)
        raise ValueError(f"shared validation set: no held-out documents in {names} at val_fraction {val_fraction} "
                         f"(need at least {seq_len + 1} tokens); raise ablate.val_fraction or add datasets")
    tokens = np.stack([row for _, row in order])
    n = len(tokens)
    contributed = {name: sum(seq_len + 1 for k, _ in order if k == i) for i, (name, _) in enumerate(datasets)}
    out.mkdir(parents=True, exist_ok=True)
    dtype = token_dtype(tok.vocab_size)
    tokens.astype(dtype).tofile(out / "tokens.bin")
    atomic_write_json(meta_path, {"n": n, "seq_len": seq_len, "dtype": dtype.name, "sources": contributed})
    return ValidationSet(tokens, contributed)


def _equal_shares(available: list[int], need: int) -> list[int]:
    """Split ``need`` tokens equally over the sources; what a short source lacks goes to the others."""
    quota = [0] * len(available)
    left, open_ = need, [i for i, a in enumerate(available) if a > 0]
    while left > 0 and open_:
        share = max(1, left // len(open_))
        for i in list(open_):
            take = min(share, available[i] - quota[i], left)
            quota[i] += take
            left -= take
            if quota[i] >= available[i]:
                open_.remove(i)
    return quota


def heldout_exercises(ds: Dataset | None, holdout_fraction: float) -> list[Problem]:
    """The verified exercises a finetuning arm never sees: the one exercise split (by source file,
    :func:`textbooklm.record.is_heldout_exercise`), which the finetuning arm's pack uses too."""
    if ds is None or not ds.is_finished or not ds.num_rows:
        return []
    names = set(ds.schema().names)
    need = {"prompt", "completion", "entry_point", "test"}
    if not need <= names:
        raise ValueError(f"{ds.path}: exercises need columns {sorted(need)} (has {sorted(names)})")
    cols = ["prompt", "completion", "entry_point", "test"] + [c for c in ("id", "provenance") if c in names]
    problems = []
    for i, r in enumerate(ds.iter_records(columns=cols)):
        if is_heldout_exercise(r, holdout_fraction) and r["test"]:
            problems.append(Problem(task_id=f"exercise/{r.get('id') or i}", prompt=r["prompt"],
                                    entry_point=r["entry_point"], test=r["test"],
                                    canonical_solution=r["completion"]))
    return problems
