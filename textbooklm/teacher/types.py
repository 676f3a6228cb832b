"""What goes into a teacher and what comes out: :class:`Request`, :class:`Result`, and the cache key.

Plain dataclasses, JSON-serialisable, so results can be cached in SQLite and written into a
record's provenance (teacher model + request hash) without any conversion layer.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from typing import Any

from textbooklm.unicode_text import json_text

Message = dict[str, str]

# Failure reasons (Result.error starts with one of these, then ': detail').
REASON_BUDGET = "budget"
REASON_RATE_LIMITED = "rate_limited"
REASON_SERVER = "server_error"
REASON_TIMEOUT = "timeout"
REASON_CONNECTION = "connection"
REASON_MALFORMED = "malformed_reply"
REASON_CLIENT = "client_error"
REASON_NO_LOGPROBS = "no_choice_logprobs"
REASON_LOCAL = "local_error"


@dataclass(frozen=True)
class Request:
    """One chat request plus sampling parameters.

    ``choices`` turns it into a scoring request: instead of text, the result carries the probability
    of each choice as the reply's first token(s) (``Result.choice_probs``), which is how the judge reads
    a 0..5 grade without parsing free text.
    """

    messages: tuple[Message, ...] | list[Message]
    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] | None = None
    json_schema: dict[str, Any] | None = None
    choices: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        msgs = tuple(dict(m) for m in self.messages)
        for i, m in enumerate(msgs):
            if not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
                raise ValueError(f"request message {i} needs string 'role' and 'content', got {m!r}")
        object.__setattr__(self, "messages", msgs)
        if self.stop is not None:
            object.__setattr__(self, "stop", tuple(self.stop))
        if self.choices is not None:
            if not self.choices:
                raise ValueError("request choices must not be empty")
            object.__setattr__(self, "choices", tuple(self.choices))
        if self.max_tokens < 1:
            raise ValueError(f"request max_tokens must be >= 1, got {self.max_tokens}")

    def params(self) -> dict[str, Any]:
        """Everything but the messages, as the cache key and logs see it."""
        return {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
            "stop": list(self.stop) if self.stop else None,
            "json_schema": self.json_schema,
            "choices": list(self.choices) if self.choices else None,
        }


def request_key(backend: str, model: str, request: Request) -> str:
    """Stable hash of (backend, model, messages, parameters, seed): the cache key.

    Endpoint URL and credentials are deliberately not part of it: the same model answers the same
    request the same way wherever it is served, and a key must never reach the cache.
    """
    blob = json.dumps(
        {"backend": backend, "model": model, "messages": list(request.messages), "params": request.params()},
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()  # same bytes for valid text


@dataclass
class Result:
    """How one request ended: completed (``error is None``) or failed with a reason."""

    key: str
    text: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    finish_reason: str | None = None
    latency_s: float = 0.0
    error: str | None = None
    attempts: int = 0
    choice_probs: list[float] | None = None
    # The probability the choices covered before renormalising (first token's top alternatives over
    # HTTP, the whole vocabulary locally): low means the labels were not what the model would say.
    choice_mass: float | None = None
    cached: bool = False
    retries: dict[str, int] = field(default_factory=dict)
    # The server answered (and billed) this request even though it failed our check: a reply with no
    # usable label logprobs. Cached like a completed one, so a re-run does not pay for it again.
    answered: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def cacheable(self) -> bool:
        """Completed, or a paid reply whose failure asking again cannot change (see ``answered``)."""
        return self.error is None or self.answered

    @property
    def reason(self) -> str | None:
        """The failure category (the part of ``error`` before ':'), for ledgers and summaries."""
        return None if self.error is None else self.error.split(":", 1)[0]

    def to_json(self) -> str:
        # Field by field rather than dataclasses.asdict: asdict deep-copies, and this runs per result.
        # json_text: a reply may hold a lone surrogate ("\\ud800" in the server's JSON), which SQLite refuses.
        return json_text({name: getattr(self, name) for name in _STORED_FIELDS})

    @classmethod
    def from_json(cls, text: str) -> Result:
        data = json.loads(text)
        return cls(**{k: v for k, v in data.items() if k in _FIELD_NAMES})  # rows of older versions too


# What a cached result stores: everything but ``cached``, which says where this copy came from.
_STORED_FIELDS = tuple(f.name for f in fields(Result) if f.name != "cached")
_FIELD_NAMES = frozenset(f.name for f in fields(Result))
