"""Held-out verified exercises: the part of the run's exercises that finetuning never trains on.

Why: HumanEval says how a model does on someone else's problems; the held-out exercises say whether
finetuning taught the docstring -> body skill on problems of the training distribution it did not
see (phi-1 reports both kinds). They are chosen by the token packer's own validation rule (a hash of
``prompt + completion`` below ``fraction``), so with ``fraction`` equal to the finetune stage's
``data.val_fraction`` they are exactly its validation documents: never in its training split.
"""

from __future__ import annotations

from textbooklm.problems import Problem
from textbooklm.record import is_validation
from textbooklm.store import Dataset


def is_heldout(text: str, fraction: float) -> bool:
    """Held out of finetuning: the packer's own per-document split (``textbooklm.record.is_validation``)."""
    return is_validation(text, fraction)


def heldout_problems(ds: Dataset, fraction: float, limit: int | None = None) -> list[Problem]:
    """The exercises of ``ds`` on the held-out side of the split, as problems (reference = completion)."""
    if not ds.is_finished:
        raise FileNotFoundError(f"{ds.path}: the exercises dataset is not finished (run the exercises stage)")
    schema = ds.schema()
    if schema is None:  # a finished stage with no verified exercise
        return []
    need = {"prompt", "completion", "entry_point", "test"}
    if not need <= set(schema.names):
        raise ValueError(f"{ds.path}: held-out exercises need columns {sorted(need)} (has {sorted(schema.names)})")
    cols = [*sorted(need), *(["id"] if "id" in schema.names else [])]
    problems = []
    for i, r in enumerate(ds.iter_records(columns=cols)):
        if r["test"] and is_heldout((r["prompt"] or "") + (r["completion"] or ""), fraction):
            problems.append(Problem(task_id=f"exercise/{r.get('id') or i}", prompt=r["prompt"],
                                    entry_point=r["entry_point"], test=r["test"], canonical_solution=r["completion"]))
    return problems[:limit] if limit else problems
