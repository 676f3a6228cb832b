"""Finetuning's train/validation split of exercises is by source: a mined exercise's corpus file, a
teacher exercise's own id (record.is_heldout_exercise). Checked on exercises mined from real stdlib
files, packed by the real packer, and read back from the token shards."""

from __future__ import annotations

import json

from lm_corpus import stdlib_texts

from textbooklm.lm.pack import PackedTokens, pack
from textbooklm.model.tokenizer import load_tokenizer
from textbooklm.record import content_id, exercise_source_key, is_heldout_exercise, is_validation
from textbooklm.store import write_dataset
from textbooklm.synth.mining import mine_functions

FRACTION = 0.3


def mined_rows(n_files: int) -> list[dict]:
    """Exercise rows with the provenance the corpus source writes (synth.mined.source_id/path)."""
    rows = []
    for k, text in enumerate(stdlib_texts(n_files, start=20)):
        fid = content_id(text)
        found, _, _ = mine_functions(text, f"lib/{k}.py", fid)
        for c in found[:8]:
            rows.append({"id": content_id(c.code), "prompt": c.prompt, "completion": c.completion,
                         "entry_point": c.name, "provenance": json.dumps({"synth": {"source": "corpus",
                                                                                     "mined": c.provenance()}})})
    return rows


def test_no_source_file_has_exercises_on_both_sides(tmp_path, bpe_tokenizer):
    rows = mined_rows(40)
    files = {exercise_source_key(r) for r in rows}
    assert len(rows) > 60 and len(files) > 10
    # The old per-exercise rule put one file's functions on both sides: the case this guards against.
    old = {}
    for r in rows:
        old.setdefault(exercise_source_key(r), set()).add(is_validation(r["prompt"] + r["completion"], FRACTION))
    assert any(len(sides) == 2 for sides in old.values())

    ds = write_dataset(tmp_path / "ex", rows, stage="exercises")
    tok = load_tokenizer(bpe_tokenizer)
    index = pack([("exercises", ds, 1.0)], tok, tmp_path / "p", loss_on="completion", val_fraction=FRACTION)
    assert index["val_fraction"] == FRACTION
    held = [r for r in rows if is_heldout_exercise(r, FRACTION)]
    assert index["splits"]["val"]["documents"] == len(held) > 0
    assert index["splits"]["train"]["documents"] == len(rows) - len(held) > 0
    decoded = {split: tok.decode([int(t) for s in PackedTokens(tmp_path / "p", split, 16).tokens for t in s])
               for split in ("train", "val")}
    sides: dict[str, set[str]] = {}
    for r in rows:
        in_val = r["prompt"].strip() in decoded["val"] and r["completion"].strip() in decoded["val"]
        assert in_val == is_heldout_exercise(r, FRACTION)
        sides.setdefault(exercise_source_key(r), set()).add("val" if in_val else "train")
    assert all(len(s) == 1 for s in sides.values())
    assert {"val"} in sides.values() and {"train"} in sides.values()


def test_the_tokenizer_reads_no_exercise_decontam_marked_held_out(tmp_path):
    from textbooklm.lm.stage import document_texts

    rows = mined_rows(6)
    for r in rows:  # as decontam writes its cleaned copy: each exercise carries its side
        prov = json.loads(r["provenance"])
        prov["decontam"] = {"split": "heldout" if is_heldout_exercise(r, 0.5) else "train"}
        r["provenance"] = json.dumps(prov)
    ds = write_dataset(tmp_path / "ex", rows, stage="decontam.exercises")
    read = list(document_texts(ds))
    expected = [r["prompt"] + r["completion"] for r in rows if not is_heldout_exercise(r, 0.5)]
    assert read == expected and 0 < len(read) < len(rows)
    # The tokenizer stage's ledger: each held-out exercise read is a heldout-exercise row of its rejected/.
    from textbooklm.lm.config import TokenizerConfig
    from textbooklm.lm.stage import run_tokenizer
    from textbooklm.store import Dataset

    tok = run_tokenizer(TokenizerConfig(vocab_size=300), {"exercises": ds}, tmp_path / "tokenizer")
    counts = tok.manifest["summary"]["counts"]
    held = {r["id"] for r in rows if is_heldout_exercise(r, 0.5)}
    assert (counts["in"], counts["kept"], counts["dropped_by_reason"]) == (len(rows), len(read),
                                                                           {"heldout-exercise": len(held)})
    rejected = Dataset(tmp_path / "tokenizer" / "rejected").to_table().to_pylist()
    assert {r["id"] for r in rejected} == held and all(r["dataset"] == str(ds.path) for r in rejected)
