"""What the Batch API backend has submitted, on disk, so that a kill never submits anything twice.

One small JSON file per submission in ``CACHE_DIR/batches/`` (one file per submission, written
atomically, so several processes sharing a cache never rewrite each other's records):

- written *before* the batch is created, with the uploaded input file's id (``state = "uploaded"``):
  a kill between upload and create is resolved on the next run by finding the batch whose
  ``input_file_id`` matches in the server's batch list, or creating it then;
- updated with the batch id the moment the server returns it (``"submitted"``);
- updated when the output was downloaded (``"downloaded"``); the output and error lines are kept
  beside it (``<id>.output.jsonl``, ``<id>.errors.jsonl``) so that requests answered by a batch
  that this run no longer needs (or a run killed after download) are served from disk later,
  never paid for again.

Why files and not the SQLite request cache: a submission is a promise of up to 50,000 results that
arrive a day later; its bookkeeping must survive any kill between the two, and only the backend
knows the protocol. Finished results still go to the request cache through the Teacher, keyed as
synchronous requests are, so a later synchronous run reuses them.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

OPEN_STATES = ("uploaded", "submitted")


@dataclass
class Submission:
    """One batch as this project sent it."""

    local_id: str
    model: str
    keys: list[str]
    round: int = 0  # 0: first try; n: the n-th re-batch of lines that failed or expired
    state: str = "uploaded"  # uploaded -> submitted -> downloaded (or "failed": the server refused it)
    input_file_id: str = ""
    batch_id: str = ""
    server_status: str = ""
    error: str = ""
    created_at: float = field(default_factory=time.time)


class BatchStore:
    """The submissions of one cache folder (``CACHE_DIR/batches``)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def _path(self, local_id: str, suffix: str = ".json") -> Path:
        return self.folder / f"{local_id}{suffix}"

    def new(self, model: str, keys: list[str], round_: int) -> Submission:
        return Submission(local_id=f"{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(4)}", model=model,
                          keys=list(keys), round=round_)

    def save(self, sub: Submission) -> None:
        path = self._path(sub.local_id)
        tmp = path.with_suffix(f".tmp-{os.getpid()}")
        tmp.write_text(json.dumps(asdict(sub)), encoding="utf-8")
        os.replace(tmp, path)

    def all(self, model: str) -> list[Submission]:
        """Every submission recorded for ``model`` (oldest first); unreadable records are skipped."""
        out = []
        for path in sorted(self.folder.glob("*.json")):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                sub = Submission(**data)
            except (OSError, ValueError, TypeError):
                continue
            if sub.model == model:
                out.append(sub)
        return sorted(out, key=lambda s: s.created_at)

    def save_lines(self, sub: Submission, kind: str, data: bytes) -> None:
        """Keep a downloaded output or error file (``kind``: "output" or "errors")."""
        path = self._path(sub.local_id, f".{kind}.jsonl")
        tmp = path.with_suffix(f".tmp-{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def lines(self, sub: Submission, kind: str) -> dict[str, dict[str, Any]]:
        """custom_id -> line of a downloaded file (empty when none); a torn or bad line is skipped."""
        path = self._path(sub.local_id, f".{kind}.jsonl")
        out: dict[str, dict[str, Any]] = {}
        if not path.is_file():
            return out
        for raw in path.read_bytes().splitlines():
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if isinstance(line, dict) and isinstance(line.get("custom_id"), str):
                out[line["custom_id"]] = line
        return out
