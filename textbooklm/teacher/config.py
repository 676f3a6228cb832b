"""Config models of the teacher layer: one named teacher, its prices, and a run's cost plan.

A pipeline config holds named teachers (``[teachers.gpt4]``, ``[teachers.local]``); stages refer to one
by name. Prices are USD per 1M tokens; a few well-known models have presets so a config only needs to
override what differs (e.g. a negotiated rate, or a self-hosted model billed per GPU-hour turned into a
per-token figure).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from textbooklm.config_base import StrictModel


class Price(StrictModel):
    """What one model costs, in USD per 1M tokens."""

    usd_per_1m_input: float = Field(..., ge=0, description="USD per 1M prompt (input) tokens.")
    usd_per_1m_output: float = Field(..., ge=0, description="USD per 1M completion (output) tokens.")

    def cost(self, tokens_in: float, tokens_out: float) -> float:
        return (tokens_in * self.usd_per_1m_input + tokens_out * self.usd_per_1m_output) / 1e6


# List prices when each was current. The 2023 GPT-4 (8k) and GPT-3.5-turbo rows are what the phi-1
# paper paid; they reproduce its ~$3,000 judging + ~$2,500 generation figure (see `textbooklm cost`).
PRICE_PRESETS: dict[str, Price] = {
    "gpt-4-0613": Price(usd_per_1m_input=30.0, usd_per_1m_output=60.0),
    "gpt-4": Price(usd_per_1m_input=30.0, usd_per_1m_output=60.0),
    "gpt-4-32k": Price(usd_per_1m_input=60.0, usd_per_1m_output=120.0),
    "gpt-3.5-turbo-0613": Price(usd_per_1m_input=1.5, usd_per_1m_output=2.0),
    "gpt-3.5-turbo": Price(usd_per_1m_input=1.5, usd_per_1m_output=2.0),
    "gpt-4-turbo": Price(usd_per_1m_input=10.0, usd_per_1m_output=30.0),
    "gpt-4o": Price(usd_per_1m_input=2.5, usd_per_1m_output=10.0),
    "gpt-4o-mini": Price(usd_per_1m_input=0.15, usd_per_1m_output=0.6),
    "gpt-4.1": Price(usd_per_1m_input=2.0, usd_per_1m_output=8.0),
    "gpt-4.1-mini": Price(usd_per_1m_input=0.4, usd_per_1m_output=1.6),
    "gpt-4.1-nano": Price(usd_per_1m_input=0.1, usd_per_1m_output=0.4),
    # Models on this machine cost electricity, not tokens.
    "smollm2": Price(usd_per_1m_input=0.0, usd_per_1m_output=0.0),
}


class TeacherConfig(StrictModel):
    """One teacher LLM: where it runs, how hard it may be pushed, and what it may cost."""

    backend: Literal["openai", "local"] = Field(
        ..., description="'openai': any OpenAI-compatible chat endpoint; 'local': a transformers model here."
    )
    model: str = Field(
        ...,
        description="Model name sent to the endpoint (openai), or 'smollm2' / a Hugging Face model folder "
        "(local).",
    )
    base_url: str | None = Field(
        None, description="Endpoint root, e.g. http://127.0.0.1:8000/v1 (vLLM); unset means api.openai.com."
    )
    api_key_env: str | None = Field(
        "OPENAI_API_KEY",
        description="NAME of the environment variable holding the API key (the key itself never goes in "
        "a config, a log or the cache). It must be set, or the teacher is refused before any request; "
        "set this to \"\" for a self-hosted server that needs no key.",
    )
    concurrency: int = Field(16, ge=1, description="Requests in flight at once (openai backend), per driver.")
    drivers: int = Field(
        1, ge=1, description="Processes that send a stage's requests, each with its own client, `concurrency` "
        "and cache file, on the run's executor (local pool or Ray: more machines, more in flight); 1 = in the "
        "stage's own process (teacher/fanout.py). Where a stage supports it (textbooks).",
    )
    http: Literal["auto", "aiohttp", "httpx"] = Field(
        "auto",
        description="HTTP transport under the openai SDK: 'aiohttp' (the SDK's aiohttp extra, about half "
        "the client CPU per request), 'httpx' (the SDK's default), 'auto' = aiohttp when installed.",
    )
    rpm: float | None = Field(None, gt=0, description="Requests per minute allowed; unset = no limit.")
    tpm: float | None = Field(
        None, gt=0, description="Tokens per minute allowed (prompt estimate + max_tokens, as OpenAI counts)."
    )
    rate_burst_s: float = Field(
        1.0, gt=0, description="Seconds of rpm/tpm allowance that may be spent at once (token-bucket size)."
    )
    max_retries: int = Field(
        6, ge=0, description="Retries per request on 429, 5xx, timeouts, dropped connections, bad replies."
    )
    backoff_base_s: float = Field(1.0, gt=0, description="First retry delay; doubles each retry, jittered.")
    backoff_max_s: float = Field(60.0, gt=0, description="Longest delay between retries.")
    timeout_s: float = Field(120.0, gt=0, description="Per-request time limit (one attempt).")
    top_logprobs: int = Field(
        20, ge=1, le=20, description="Alternatives asked per token when scoring choices via logprobs."
    )
    min_choice_mass: float = Field(
        0.2, ge=0, le=1,
        description="When the answer labels (case and spaces ignored, every spelling summed) cover less "
        "than this share of the first token's probability, the judge generates a reply instead of "
        "trusting the labels' renormalised probabilities (over HTTP a label outside the top "
        "alternatives counts as 0). SmolLM2 measured 0.26-0.38 on phi1's high/low, 0.01-0.03 on "
        "fineweb-edu's digits.",
    )
    batch: bool = Field(
        False, description="openai backend: send requests through the Batch API (/v1/files + /v1/batches) "
        "instead of /chat/completions: about half the price, replies within batch_window. Same request "
        "cache: a later synchronous run reuses the replies (teacher/batch_backend.py).",
    )
    batch_max_requests: int = Field(50_000, ge=1, le=50_000, description="Requests per batch (the API's "
                                    "limit is 50,000).")
    batch_max_bytes: int = Field(190_000_000, ge=1_000, le=200_000_000, description="Bytes per batch input "
                                 "file (the API's limit is 200 MB).")
    batch_window: Literal["24h"] = Field("24h", description="The batch's completion window.")
    batch_collect_s: float = Field(1.0, gt=0, description="A batch is sent when this long passes with no "
                                   "new request (or batch_max_requests are waiting).")
    batch_poll_s: float = Field(30.0, gt=0, description="First delay between polls of a batch; doubles.")
    batch_poll_max_s: float = Field(600.0, gt=0, description="Longest delay between polls of a batch.")
    batch_price_factor: float = Field(0.5, gt=0, le=1, description="Batch price as a share of the "
                                      "synchronous one (OpenAI: 0.5); the ledger, budget and `cost` use it.")
    batch_size: int = Field(8, ge=1, description="Prompts generated together (local backend).")
    device: str = Field("cpu", description="Torch device of the local model ('cpu', 'cuda', 'cuda:1').")
    cache: bool = Field(True, description="Keep finished results in the SQLite request cache and reuse them.")
    budget_usd: float | None = Field(
        None, gt=0, description="Stop a stage before its spend on this teacher would pass this many USD."
    )
    budget_tokens: int | None = Field(
        None, gt=0, description="Stop a stage before its tokens (in + out) on this teacher would pass this."
    )
    price: Price | None = Field(None, description="USD per 1M tokens; overrides any preset.")
    price_preset: str | None = Field(
        None, description="Use this preset's price instead of looking up `model` (e.g. a renamed deployment)."
    )

    @model_validator(mode="after")
    def _check(self) -> TeacherConfig:
        if self.price_preset is not None and self.price_preset not in PRICE_PRESETS:
            raise ValueError(
                f"unknown price_preset {self.price_preset!r}; presets: {', '.join(sorted(PRICE_PRESETS))}"
            )
        if self.batch and self.drivers > 1:
            raise ValueError("batch = true sends its batches from one process: set drivers = 1")
        if self.batch and self.backend != "openai":
            raise ValueError("batch = true needs backend = 'openai' (the Batch API is an HTTP endpoint)")
        if self.budget_usd is not None and self.resolved_price() is None:
            raise ValueError(
                f"budget_usd needs a price for model {self.model!r}: set `price` or `price_preset`"
            )
        return self

    def resolved_price(self) -> Price | None:
        """The price in force (times ``batch_price_factor`` when ``batch`` is on)."""
        price = self._list_price()
        if price is None or not self.batch:
            return price
        return Price(usd_per_1m_input=price.usd_per_1m_input * self.batch_price_factor,
                     usd_per_1m_output=price.usd_per_1m_output * self.batch_price_factor)

    def _list_price(self) -> Price | None:
        """Explicit, else preset by name, else free for local models, else unknown."""
        if self.price is not None:
            return self.price
        if self.price_preset is not None:
            return PRICE_PRESETS[self.price_preset]
        if self.model in PRICE_PRESETS:
            return PRICE_PRESETS[self.model]
        if self.backend == "local":
            return PRICE_PRESETS["smollm2"]
        return None


class StageEstimate(StrictModel):
    """The teacher work one stage is planned to do, for `textbooklm cost` before a run starts."""

    teacher: str = Field(..., description="Name of the teacher (a key of [teachers]) this stage uses.")
    requests: int = Field(
        ..., ge=0, description="Planned number of requests (files judged, documents written)."
    )
    input_tokens_per_request: float = Field(
        ..., ge=0, description="Average prompt tokens per request (instructions + the file or seed)."
    )
    output_tokens_per_request: float = Field(
        ..., ge=0, description="Average completion tokens per request (a score: a few; a textbook: ~1000)."
    )


# Fields that can change what a teacher replies. Everything else (concurrency, transport, rate limits,
# timeouts, retries, budgets, prices, batch size, device, cache switch, key variable) is transport or
# policy: changing it must not re-run a stage, and the request cache (keyed by request content) is kept.
REPLY_FIELDS = ("backend", "model", "base_url", "top_logprobs", "min_choice_mass")


def reply_fields(cfg: TeacherConfig) -> dict[str, object]:
    """The reply-changing part of a teacher's config: what enters the hash of a stage that uses it."""
    return cfg.model_dump(mode="json", include=set(REPLY_FIELDS))
