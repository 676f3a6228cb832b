"""The base every config model derives from (kept apart from config.py to avoid import cycles)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Unknown keys are rejected and values are validated on assignment.

    Why: a typo that silently falls back to a default is the most expensive bug a days-long data
    run can have.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
