"""Teachers: the LLMs that judge and write, hosted or local, cached, rate-limited, budgeted, resumable.

Every stage that asks an LLM anything goes through this layer. The public entry point::

    from textbooklm.teacher import Request, build_teacher

    teacher = build_teacher(cfg.teachers["gpt4"], cache_dir=run_dir / "_cache", stage="judge")
    results = teacher.complete([Request(messages=[{"role": "user", "content": "..."}], max_tokens=64)])
    probs = teacher.score_choices("Rate this code 0-5: ...", ["0", "1", "2", "3", "4", "5"])
    summary_line(teacher.summary())          # requests, tokens, failures by reason, cost, wall time
    teacher.close()

``build_teacher(cfg, cache_dir, stage)`` picks the backend (``openai``: any OpenAI-compatible endpoint;
``local``: a transformers model, ``smollm2`` by default), opens the SQLite request cache in
``cache_dir`` (unless ``cfg.cache`` is false or ``cache_dir`` is None) and loads the stage's ledger
from it, so budgets and costs add up across interrupted and resumed runs of the same stage.
``complete_spread`` (fanout.py) sends one list of requests through N drivers on the run's executor.

Heavy imports (openai, torch, transformers) happen only when a backend is built.
"""

from __future__ import annotations

from pathlib import Path

from textbooklm.teacher.backend import TeacherError
from textbooklm.teacher.cache import CACHE_FILE, RequestCache
from textbooklm.teacher.config import PRICE_PRESETS, Price, StageEstimate, TeacherConfig
from textbooklm.teacher.teacher import Teacher
from textbooklm.teacher.types import Request, Result, request_key

__all__ = [
    "PRICE_PRESETS",
    "Price",
    "Request",
    "Result",
    "StageEstimate",
    "Teacher",
    "TeacherConfig",
    "TeacherError",
    "build_teacher",
    "request_key",
]


def build_teacher(cfg: TeacherConfig, cache_dir: str | Path | None, stage: str = "default", *,
                  driver: bool = False) -> Teacher:
    """A ready :class:`Teacher` for one stage: backend + request cache + ledger + budget.

    ``driver``: this process is one of several sending a stage's requests (``fanout.py``); it writes its
    own cache file in ``cache_dir`` instead of the main one (``cache.py``). Lookups see every file.
    """
    if cfg.backend == "openai" and cfg.batch:
        from textbooklm.teacher.batch_backend import OpenAIBatchBackend

        if cache_dir is None:
            raise TeacherError(f"teacher {cfg.model!r}: batch = true needs a cache folder (it records every "
                               "submitted batch so that a killed run never submits again)")
        backend = OpenAIBatchBackend(cfg, Path(cache_dir) / "batches")
    elif cfg.backend == "openai":
        from textbooklm.teacher.openai_backend import OpenAIBackend

        backend = OpenAIBackend(cfg)
    elif cfg.backend == "local":
        from textbooklm.teacher.local_backend import LocalBackend

        backend = LocalBackend(cfg)
    else:  # pragma: no cover - the config's Literal rules this out
        raise TeacherError(f"unknown teacher backend {cfg.backend!r}")
    cache = None
    if cfg.cache and cache_dir is not None:
        cache = RequestCache.for_driver(Path(cache_dir)) if driver else RequestCache(Path(cache_dir) / CACHE_FILE)
    return Teacher(cfg, backend, cache, stage)

