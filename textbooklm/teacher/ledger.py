"""What a stage spent on a teacher, and the budget that stops it before it spends too much.

The ledger is per (stage, model) and cumulative across resumed runs (it is saved in the request
cache), so a budget means "this stage may spend this much in total", not "per attempt".

The budget is enforced before sending: a request is admitted only if what is spent, plus the worst
case of everything in flight, plus this request's worst case (its prompt's token bound + max_tokens)
stays within the budget. When a request does not fit it waits for in-flight requests to settle
(their real cost is usually below the worst case); once nothing is in flight and it still does not
fit, the stage stops: the rest are marked failed with reason ``budget`` and everything finished is kept.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, fields

from textbooklm.teacher.config import Price
from textbooklm.teacher.types import Result


@dataclass
class LedgerEntry:
    """Totals for one stage on one model."""

    stage: str
    model: str
    requests: int = 0
    cached: int = 0
    completed: int = 0
    failed: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    # The first error of each reason, in the server's words: what a user needs to fix it.
    failure_examples: dict[str, str] = field(default_factory=dict)
    retries: dict[str, int] = field(default_factory=dict)
    tokens_in: int = 0
    tokens_out: int = 0
    wall_s: float = 0.0
    cost_usd: float | None = 0.0
    budget_stopped: bool = False

    def record(self, result: Result, price: Price | None) -> None:
        """Count one request's outcome (a cache hit counts as a request, costs nothing)."""
        self.requests += 1
        if result.cached:
            self.cached += 1
            return
        for reason, n in result.retries.items():
            self.retries[reason] = self.retries.get(reason, 0) + n
        # Tokens are paid for whether or not the reply was usable.
        self.tokens_in += result.tokens_in
        self.tokens_out += result.tokens_out
        if self.cost_usd is not None:
            self.cost_usd = None if price is None else self.cost_usd + price.cost(
                result.tokens_in, result.tokens_out
            )
        if result.ok:
            self.completed += 1
        else:
            self.failed += 1
            reason = result.reason or "unknown"
            self.failures[reason] = self.failures.get(reason, 0) + 1
            self.failure_examples.setdefault(reason, (result.error or "").split(": ", 1)[-1][:300])

    def to_dict(self) -> dict:
        """A snapshot (the per-reason dicts copied); cheaper than dataclasses.asdict's deep copy."""
        return {f.name: _copy(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict) -> LedgerEntry:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def summary(self) -> str:
        cost = "cost unknown (no price)" if self.cost_usd is None else f"${self.cost_usd:,.4f}"
        fails = ", ".join(
            f"{k} {v}" + (f": {self.failure_examples[k]}" if k in self.failure_examples else "")
            for k, v in sorted(self.failures.items())
        ) or "none"
        line = (
            f"teacher {self.model} [{self.stage}]: {self.completed} completed, {self.cached} from cache, "
            f"{self.failed} failed ({fails}); {self.tokens_in:,} tokens in, {self.tokens_out:,} out, "
            f"{cost}, {self.wall_s:.1f} s"
        )
        if self.budget_stopped:
            line += "; stopped at the budget"
        return line


def _copy(value: object) -> object:
    return dict(value) if isinstance(value, dict) else value


class BudgetGate:
    """Admits requests while their worst-case spend fits under budget_usd / budget_tokens."""

    def __init__(
        self, entry: LedgerEntry, price: Price | None, budget_usd: float | None, budget_tokens: int | None,
        base: LedgerEntry | None = None,
    ) -> None:
        self.entry = entry
        # What other drivers had spent on this stage when this one started (their own files' rows).
        self.base_usd = (base.cost_usd or 0.0) if base is not None else 0.0
        self.base_tokens = (base.tokens_in + base.tokens_out) if base is not None else 0
        self.price = price
        self.budget_usd = budget_usd
        self.budget_tokens = budget_tokens
        self._reserved_usd = 0.0
        self._reserved_tokens = 0
        self._in_flight = 0
        self._cond: asyncio.Condition | None = None
        self.exhausted = False

    def _worst(self, tokens_in: int, tokens_out: int) -> tuple[float, int]:
        usd = self.price.cost(tokens_in, tokens_out) if self.price is not None else 0.0
        return usd, tokens_in + tokens_out

    def _fits(self, usd: float, tokens: int) -> bool:
        if self.budget_usd is not None:
            spent = (self.entry.cost_usd or 0.0) + self.base_usd
            if spent + self._reserved_usd + usd > self.budget_usd + 1e-12:
                return False
        if self.budget_tokens is not None:
            spent_t = self.entry.tokens_in + self.entry.tokens_out + self.base_tokens
            if spent_t + self._reserved_tokens + tokens > self.budget_tokens:
                return False
        return True

    async def admit(self, tokens_in_bound: int, max_tokens: int) -> tuple[float, int] | None:
        """Reserve a request's worst case; None means the budget is reached and the stage must stop."""
        if self.budget_usd is None and self.budget_tokens is None:
            self._in_flight += 1
            return (0.0, 0)
        if self._cond is None:
            self._cond = asyncio.Condition()
        usd, tokens = self._worst(tokens_in_bound, max_tokens)
        async with self._cond:
            while not self.exhausted and not self._fits(usd, tokens):
                if self._in_flight == 0:
                    self.exhausted = True
                    self.entry.budget_stopped = True
                    break
                await self._cond.wait()
            if self.exhausted:
                return None
            self._reserved_usd += usd
            self._reserved_tokens += tokens
            self._in_flight += 1
            return (usd, tokens)

    async def settle(self, reservation: tuple[float, int]) -> None:
        """Release a reservation once the request's real spend is in the ledger."""
        self._in_flight -= 1
        if self._cond is None:
            return
        async with self._cond:
            self._reserved_usd -= reservation[0]
            self._reserved_tokens -= reservation[1]
            self._cond.notify_all()
