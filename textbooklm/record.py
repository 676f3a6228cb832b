"""Records: the one content id, the provenance every stage adds to, and the rejected row.

Every record carries ``id`` (a stable hash of its content) and ``provenance``: a JSON object with
one entry per stage saying what that stage decided about it (score, label, dedup cluster,
contamination match, execution result, teacher model and prompt hash). A user can always answer
"why is this sample here?" from it. Stages go through these helpers instead of editing the JSON by
hand, so the shape is the same everywhere and a stage cannot drop another stage's entry.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any


def normalize(text: str) -> str:
    """What counts as "the same text": line endings, trailing spaces, blank lines at the edges."""
    return "\n".join(line.rstrip() for line in text.splitlines()).strip("\n")


def content_id(text: str, collapse_whitespace: bool = False) -> str:
    """Stable record id: a hash of the normalized text (exact duplicates share it).

    ``collapse_whitespace`` makes every run of whitespace one space first: model-written text (textbooks,
    exercises) that differs only in spacing is the same sample. ``surrogatepass`` keeps a text with a
    lone surrogate hashable, so it can be rejected by name.
    """
    norm = re.sub(r"\s+", " ", text).strip() if collapse_whitespace else normalize(text)
    return hashlib.blake2b(norm.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def provenance(row: dict[str, Any]) -> dict[str, Any]:
    """The row's provenance as a dict (an empty one for a row without)."""
    raw = row.get("provenance")
    if not raw:
        return {}
    if isinstance(raw, dict):
        return dict(raw)
    try:
        data = json.loads(raw)
    except (TypeError, json.JSONDecodeError):  # a user's dataset with its own provenance text: kept, not lost
        return {"previous": raw}
    return data if isinstance(data, dict) else {"previous": data}


def with_provenance(row: dict[str, Any], stage: str, /, **decision: Any) -> dict[str, Any]:
    """A copy of ``row`` whose provenance entry for ``stage`` also holds ``decision`` (others kept).

    ``row`` and ``stage`` are positional-only, so a decision may itself hold a ``stage`` key (synth's do)."""
    prov = provenance(row)
    entry = prov.get(stage)
    prov[stage] = {**(entry if isinstance(entry, dict) else {}), **decision}
    return {**row, "provenance": json.dumps(prov)}


def rejected_row(row: dict[str, Any], stage: str, reason: str, detail: str = "", **decision: Any) -> dict[str, Any]:
    """The row as the stage's ``rejected`` dataset keeps it: reason, detail, and the decision in provenance."""
    out = with_provenance(row, stage, decision=reason, **decision)
    return {**out, "reason": reason, "detail": detail}


def is_validation(text: str, val_fraction: float) -> bool:
    """The one per-document train/validation split: the first 8 bytes of the text's BLAKE2 hash as a fraction.

    Packing (``lm``), the ablation's shared validation set and the evaluation of held-out exercises
    (``evals``) all use it, so a document held out of training is held out everywhere.
    """
    if val_fraction <= 0:
        return False
    h = int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")
    return h / 2**64 < val_fraction


def exercise_source_key(row: dict[str, Any]) -> str:
    """What an exercise was made from, the unit the finetune/held-out split is decided on.

    A mined exercise (``provenance.synth.mined``) comes from one corpus file: its key is that file
    (``file:<corpus record id>``, else ``path:<source path>``), so every function of a file falls on
    the same side. Splitting per exercise put ``read_int4`` in the held-out set and its near-copy
    ``read_uint4`` from the same file in the training set. A teacher exercise has no source file:
    its key is its own id (``exercise:<id>``, the content id of prompt + completion when it has none).
    """
    synth = provenance(row).get("synth")
    mined = synth.get("mined") if isinstance(synth, dict) else None
    if isinstance(mined, dict):
        if mined.get("source_id"):
            return f"file:{mined['source_id']}"
        if mined.get("source_path"):
            return f"path:{mined['source_path']}"
    rid = row.get("id") or content_id((row.get("prompt") or "") + (row.get("completion") or ""))
    return f"exercise:{rid}"


def is_heldout_exercise(row: dict[str, Any], fraction: float) -> bool:
    """The one finetune-train / held-out split of exercises: :func:`is_validation` of the source key.

    Finetuning's pack (its validation split), ``eval``'s held-out exercises, decontam (which treats the
    held-out ones as a benchmark) and ``ablate`` all call this, so with one fraction they agree, and no
    source file has exercises on both sides.
    """
    return is_validation(exercise_source_key(row), fraction)


def heldout_source_file(row: dict[str, Any]) -> str | None:
    """The corpus record id of a mined exercise's source file (None for a teacher exercise)."""
    synth = provenance(row).get("synth")
    mined = synth.get("mined") if isinstance(synth, dict) else None
    if isinstance(mined, dict) and mined.get("source_id"):
        return str(mined["source_id"])
    return None
