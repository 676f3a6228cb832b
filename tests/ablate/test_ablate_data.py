"""The ablation's data: the shared validation set is made of documents no arm trains on, held-out
exercises are exactly the ones the finetuning pack leaves out, and datasets resolve like the pipeline's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from textbooklm.ablate.data import (
    build_validation,
    heldout_exercises,
    pack_arm,
    resolve_dataset,
    resolve_tokenizer,
)
from textbooklm.lm.pack import PackedTokens, is_validation
from textbooklm.model.tokenizer import load_tokenizer
from textbooklm.store import Dataset, write_dataset


def _pieces(tok, row: np.ndarray) -> list[str]:
    """The row's text between end-of-text tokens (the first and last may be cut documents)."""
    pieces, cur = [], []
    for t in (int(x) for x in row):
        if t == tok.eot_id:
            pieces.append(tok.decode(cur))
            cur = []
        else:
            cur.append(t)
    return [*pieces, tok.decode(cur)]


def test_validation_set_is_held_out_documents_only(small_run, tmp_path):
    tok = load_tokenizer(small_run / "tokenizer" / "tokenizer.json")
    datasets = [("corpus", Dataset(small_run / "corpus")), ("textbooks", Dataset(small_run / "textbooks"))]
    val = build_validation(datasets, tok, 0.3, 20, 256, tmp_path / "val")
    assert val.n_sequences > 4 and val.tokens.shape[1] == 257
    assert set(val.sources) == {"corpus", "textbooks"} and all(v > 0 for v in val.sources.values())
    held = {t for _, ds in datasets for t in ds.column("text") if is_validation(t, 0.3)}
    whole, parts = 0, 0
    for row in val.tokens:
        pieces = _pieces(tok, row)
        for i, piece in enumerate(pieces):
            if 0 < i < len(pieces) - 1:  # a whole document: it must be a held-out one
                assert piece in held
                whole += 1
            elif piece and "\ufffd" not in piece:  # a cut one: part of a held-out document
                assert any(piece in doc for doc in held)
                parts += 1
    assert whole and parts
    # Read back from disk unchanged.
    again = build_validation(datasets, tok, 0.3, 20, 256, tmp_path / "val")
    assert np.array_equal(again.tokens, val.tokens)


def test_no_arm_trains_on_the_validation_documents(small_run, tmp_path):
    tok_path = small_run / "tokenizer" / "tokenizer.json"
    tok = load_tokenizer(tok_path)
    corpus = Dataset(small_run / "corpus")
    pack_arm([("corpus", corpus, 1.0)], tok, tok_path, tmp_path / "pack", total_tokens=None, val_fraction=0.3, seed=0)
    train = PackedTokens(tmp_path / "pack", "train", 64)
    text = tok.decode([int(t) for s in train.tokens for t in s])
    for doc in corpus.column("text"):
        head = doc[:200]
        if is_validation(doc, 0.3):
            assert head not in text
    assert any(doc[:200] in text for doc in corpus.column("text") if not is_validation(doc, 0.3))


def test_heldout_exercises_are_the_ones_the_finetuning_pack_leaves_out(small_run, tmp_path):
    tok_path = small_run / "tokenizer" / "tokenizer.json"
    tok = load_tokenizer(tok_path)
    ex = Dataset(small_run / "exercises")
    held = heldout_exercises(ex, 0.3)
    assert 0 < len(held) < ex.num_rows
    pack_arm([("exercises", ex, 1.0)], tok, tok_path, tmp_path / "ft", total_tokens=None, val_fraction=0.3, seed=0,
             loss_on="completion")
    train_text = tok.decode([int(t) for s in PackedTokens(tmp_path / "ft", "train", 32).tokens for t in s])
    held_names = {p.entry_point for p in held}
    for name in ex.column("entry_point"):
        assert (f"def {name}(" in train_text) == (name not in held_names)
    assert all(p.test.startswith("def check") and p.canonical_solution for p in held)


def test_no_exercises_gives_no_heldout_problems(tmp_path):
    assert heldout_exercises(None, 0.2) == []
    empty = write_dataset(tmp_path / "ex", [], stage="exercises")
    assert heldout_exercises(empty, 0.2) == []
    bad = write_dataset(tmp_path / "bad", [{"text": "x"}], stage="exercises")
    with pytest.raises(ValueError, match="exercises need columns"):
        heldout_exercises(bad, 0.2)


def test_datasets_resolve_to_decontaminated_copies_first(small_run, tmp_path):
    run = tmp_path / "run"
    (run / "filter").mkdir(parents=True)
    write_dataset(run / "filter", [{"text": "a"}], stage="filter")
    assert resolve_dataset("filter", run, "arm B").path == run / "filter"
    write_dataset(run / "decontam" / "filter", [{"text": "a"}], stage="decontam")
    assert resolve_dataset("filter", run, "arm B").path == run / "decontam" / "filter"
    with pytest.raises(FileNotFoundError, match="arm C: dataset 'textbooks' is neither a stage"):
        resolve_dataset("textbooks", run, "arm C")
    with pytest.raises(FileNotFoundError, match="tokenizer 'tokenizer'"):
        resolve_tokenizer("tokenizer", run)
    assert resolve_tokenizer("tokenizer", small_run) == small_run / "tokenizer" / "tokenizer.json"
    assert isinstance(Path(resolve_tokenizer(str(small_run / "tokenizer"), run)), Path)


def test_a_short_source_leaves_its_share_to_the_others():
    from textbooklm.ablate.data import _equal_shares

    assert _equal_shares([500, 500], 100) == [50, 50]
    assert _equal_shares([10, 1000], 100) == [10, 90]
    assert _equal_shares([0, 50], 100) == [0, 50]
    assert _equal_shares([7, 7, 1000], 99) == [7, 7, 85]


def test_heldout_exercises_are_split_by_source_file_like_the_finetuning_pack(small_run, tmp_path):
    import json

    from textbooklm.record import exercise_source_key, is_heldout_exercise

    tok_path = small_run / "tokenizer" / "tokenizer.json"
    tok = load_tokenizer(tok_path)
    rows = []
    for f in range(12):  # 12 mined files of 3 functions each
        for k in range(3):
            name = f"f{f}_{k}"
            prov = {"synth": {"source": "corpus", "mined": {"source_id": f"file{f}", "source_path": f"m{f}.py"}}}
            rows.append({"id": name, "prompt": f'def {name}(x):\n    """Return x plus {k}."""\n',
                         "completion": f"    return x + {k}\n", "entry_point": name,
                         "test": f"def check(candidate):\n    assert candidate(1) == {1 + k}\n",
                         "provenance": json.dumps(prov)})
    ex = write_dataset(tmp_path / "ex", rows, stage="exercises")
    held = heldout_exercises(ex, 0.3)
    held_names = {p.entry_point for p in held}
    assert held_names == {r["entry_point"] for r in rows if is_heldout_exercise(r, 0.3)} and held_names
    by_file: dict[str, set[bool]] = {}
    for r in rows:
        by_file.setdefault(exercise_source_key(r), set()).add(r["entry_point"] in held_names)
    assert all(len(s) == 1 for s in by_file.values())
    pack_arm([("exercises", ex, 1.0)], tok, tok_path, tmp_path / "ft", total_tokens=None, val_fraction=0.3, seed=0,
             loss_on="completion")
    train_text = tok.decode([int(t) for s in PackedTokens(tmp_path / "ft", "train", 16).tokens for t in s])
    for r in rows:
        assert (f"def {r['entry_point']}(" in train_text) == (r["entry_point"] not in held_names)
