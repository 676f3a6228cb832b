"""``textbooklm teacher check``: does a teacher answer, under the name the config gives, with logprobs?

What each check catches (each was seen green while wrong before):

- **model name**: the server's ``/v1/models`` must list ``model``; otherwise records would name a model
  that did not write them. A server that lists another model but answers anyway ignores the name:
  that is a warning. A server without ``/v1/models`` is a warning too (the name cannot be verified).
- **reply**: one tiny uncached request must come back non-empty; a failure shows the server's message.
- **logprobs**: an unambiguous few-shot prompt ("Repeat: cat" after two examples) scored over
  ("cat", "dog"): "cat" must win and the labels must cover at least ``min_choice_mass`` of the first
  token's probability, else the judge would fall back to generating (a warning, not a failure).
- **context**: the model's context length, from ``/v1/models`` (vLLM's ``max_model_len``) or the local
  model's config, so prompt + ``max_tokens`` can be sized before a run.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from textbooklm.teacher.backend import TeacherError
from textbooklm.teacher.config import TeacherConfig
from textbooklm.teacher.tokens import prompt_counter

OPENAI_URL = "https://api.openai.com/v1"
FEW_SHOT = (
    {"role": "user", "content": "Repeat: cat"}, {"role": "assistant", "content": "cat"},
    {"role": "user", "content": "Repeat: dog"}, {"role": "assistant", "content": "dog"},
    {"role": "user", "content": "Repeat: cat"},
)


@dataclass
class CheckReport:
    """What ``teacher check`` found for one teacher; ``failed`` decides the exit code."""

    name: str
    backend: str
    model: str
    latency: str = "-"
    reply: str = "-"
    name_check: str = "-"
    logprobs: str = "-"
    context: str = "unknown"
    tokens: str = "-"
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.failures)


def served_models(base_url: str | None, key: str | None, timeout_s: float) -> tuple[dict[str, Any] | None, str]:
    """``{model id: its /v1/models entry}``, or None and why (no such endpoint, refused, ...)."""
    url = (base_url or OPENAI_URL).rstrip("/") + "/models"
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout_s) as reply:
            data = json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return None, f"GET /models answered HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return None, f"GET /models failed ({getattr(exc, 'reason', exc)})"
    entries = data.get("data") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        return None, "GET /models gave no model list"
    return {str(e.get("id")): e for e in entries if isinstance(e, dict)}, ""


def check_teacher(name: str, cfg: TeacherConfig) -> CheckReport:
    """Run every check on one teacher (uncached) and say what was found."""
    from textbooklm.teacher import Request, build_teacher

    report = CheckReport(name, cfg.backend, cfg.model)
    cfg = cfg.model_copy(update={"cache": False})
    try:
        teacher = build_teacher(cfg, cache_dir=None, stage="check")
    except TeacherError as exc:
        report.failures.append(str(exc))
        report.reply = str(exc)
        return report
    try:
        listed: dict[str, Any] | None = None
        if cfg.backend == "openai":
            listed, why = served_models(cfg.base_url, getattr(teacher.backend, "_key", None), cfg.timeout_s)
            if listed is None:
                report.name_check = f"not verified: {why}"
                report.warnings.append(f"model name not verified ({why})")
            elif cfg.model in listed:
                report.name_check = "served"
                ctx = listed[cfg.model].get("max_model_len")
                if isinstance(ctx, int):
                    report.context = f"{ctx} tokens"
        else:
            report.name_check = "local"
            model_config = getattr(getattr(teacher.backend, "lm", None), "config", None)
            ctx = getattr(model_config, "max_position_embeddings", None)
            if isinstance(ctx, int):
                report.context = f"{ctx} tokens"

        start = time.monotonic()
        ask = [{"role": "user", "content": "Reply with the single word: ok"}]
        result = teacher.complete([Request(messages=ask, max_tokens=8)], show_progress=False)[0]
        report.latency = f"{time.monotonic() - start:.2f} s"
        if listed is not None and cfg.model not in listed:
            others = ", ".join(sorted(listed)) or "none"
            if result.ok:
                report.name_check = f"not listed (server has: {others}); it answered anyway: it ignores the name"
                report.warnings.append(f"the server ignores the model name; it serves {others}")
            else:
                report.name_check = f"not served (server has: {others})"
                report.failures.append(f"model {cfg.model!r} is not served (server has: {others})")
        if not result.ok:
            report.reply = str(result.error)
            report.failures.append(str(result.error))
            return report
        if not result.text.strip():
            report.reply = "empty reply"
            report.failures.append("the reply was empty")
            return report
        report.reply = repr(result.text[:40])

        scored = teacher.score_choices_many([list(FEW_SHOT)], ["cat", "dog"])[0]
        if not scored.ok or scored.choice_probs is None:
            report.logprobs = f"no ({scored.error})"
            report.warnings.append("no usable logprobs: the choices judge will generate replies instead")
        else:
            p_cat, mass = scored.choice_probs[0], scored.choice_mass
            cap = getattr(teacher.backend, "top_logprobs", None)
            detail = f"P(cat) {p_cat:.2f}" + ("" if mass is None else f", labels cover {mass:.2f}")
            if getattr(teacher.backend, "top_logprobs_capped", False):
                detail += f", the server caps top_logprobs at {cap}"
            if p_cat < 0.5:
                report.logprobs = f"wrong: {detail} (the obvious answer lost)"
                report.warnings.append("logprobs gave the wrong answer on an unambiguous prompt")
            elif mass is not None and mass < cfg.min_choice_mass:
                report.logprobs = f"weak: {detail} (< min_choice_mass {cfg.min_choice_mass:g})"
                report.warnings.append("labels cover little probability: the judge will often generate")
            else:
                report.logprobs = f"yes: {detail}"
        report.tokens = prompt_counter(teacher.backend).describe()
    finally:
        teacher.close()
    return report
