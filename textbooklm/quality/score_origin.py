"""Where a record's filter score comes from, and what the filter writes about it into provenance.

Two origins, never mixed for one record:

* a **labelled** record (the judge labelled it, the classify stage trained on it) is decided on its
  out-of-fold score: the classify stage's fold model that did not train on it scored it. Scoring it with
  the saved model would mostly hand its own label back (a fully grown forest memorises its training set);
* an **unlabelled** record is embedded by the filter and scored by the saved model, trained on every label.

So the provenance of each filter record (kept or rejected) answers "why is this sample here?" end to end:
the judge's block (its score, label, features or LLM verdict) for labelled records, then ``classify``
(split, fold, label and where the score came from), then ``filter`` (score and threshold).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textbooklm.store import Dataset

UNLABELLED = "unlabelled"
NEEDED_COLUMNS = ("id", "split", "fold", "label", "score", "in_sample_score", "judge")


@dataclass(frozen=True)
class LabelledScore:
    """One labelled record as the classify stage left it."""

    score: float  # out-of-fold: from the fold model that did not train on this record
    split: str  # "out-of-fold"
    fold: int
    label: int
    in_sample_score: float  # the saved model's score on its own training record (for contrast only)
    judge: str  # the judge's provenance block, as JSON (parsed only when a record is written)


@dataclass(frozen=True)
class LabelledScores:
    """The classify stage's labelled records by id, with the facts every provenance entry names."""

    by_id: dict[str, LabelledScore]
    folds: int
    n_labelled: int

    def classify_block(self, record_id: str) -> dict[str, Any]:
        """The ``classify`` provenance entry of a filter record: its split and the origin of its score."""
        known = self.by_id.get(record_id)
        if known is None:
            return {"split": UNLABELLED,
                    "score_from": f"saved model, trained on all {self.n_labelled} labelled records"}
        return {"split": known.split, "fold": known.fold, "folds": self.folds, "label": known.label,
                "score_from": f"fold {known.fold} model, trained on the labelled records outside fold {known.fold} "
                              "(never on this one)",
                "in_sample_score": known.in_sample_score}

    def judge_block(self, record_id: str) -> dict[str, Any] | None:
        known = self.by_id.get(record_id)
        return json.loads(known.judge) if known is not None and known.judge else None


def load_labelled_scores(classify_dir: Path) -> LabelledScores:
    """Read the classify stage's output; a clear error for one written before out-of-fold scoring."""
    ds = Dataset(classify_dir)
    schema = ds.schema()
    missing = [c for c in NEEDED_COLUMNS if schema is not None and c not in schema.names]
    if missing:
        raise ValueError(f"{classify_dir}: classify output has no {', '.join(missing)} column (written before "
                         "out-of-fold scoring); re-run the classify stage")
    rows = ds.to_table(columns=list(NEEDED_COLUMNS)).to_pylist()
    by_id = {r["id"]: LabelledScore(score=float(r["score"]), split=r["split"], fold=int(r["fold"]),
                                    label=int(r["label"]), in_sample_score=float(r["in_sample_score"]),
                                    judge=r["judge"] or "") for r in rows}
    folds = int(ds.manifest.get("summary", {}).get("folds") or (max((r.fold for r in by_id.values()), default=-1) + 1))
    return LabelledScores(by_id=by_id, folds=folds, n_labelled=len(by_id))
