"""The rounds driver of both synthesis stages: plan, ask, check, write, with the teacher kept busy.

A round is planned (its seeds drawn), asked (its prompts sent through the teacher), checked (parse,
sandbox, judge) and written (round files, then its marker: rounds.py). Done strictly one after the
other, the teacher waits while a round is checked, and the checks wait while it answers: measured
on a 2-core box, the server was busy 15% of the wall. Here round k+1's requests are in flight
(on a background thread) while round k is checked on the caller's thread.

That needs round k+1 to be planned before round k's verdicts exist, so the re-weighting runs one
round behind: round k is planned from what rounds < k-1 *kept* plus everything round k-1 *drew*
(drawn values are counted at once, so two rounds in flight do not pile onto the same topics; a
rejected seed comes back in a later round, one round later than before). Everything a plan reads is
known from marked rounds and the seed, so a killed run re-plans its unfinished rounds identically,
finds their replies in the request cache, and sends only the rest.

Ask and check may both use the teacher (exercises ask for extra solutions while checking): the
stage's teacher must serialise its calls (``lazy_services.LazyTeacher`` holds a lock), which still
overlaps the check's sandbox and parsing work with the next round's requests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from textbooklm.synth.candidate import Candidate
from textbooklm.synth.seeds import Coverage


@dataclass(frozen=True)
class RoundSteps:
    """What a stage supplies: how to plan, ask, check and count one round.

    - ``plan(k, coverage)`` -> the round's candidates (candidate.py; each with the ``seed`` it was drawn
      from) or plain seeds (``coverage`` is the planning state; do not modify);
    - ``ask(k, planned)`` -> the replies (runs on the driver's background thread);
    - ``check(k, planned, replies)`` -> (kept rows, rejected rows, marker dict), then written by the driver;
    - ``kept_seeds(marker)`` -> the seeds a finished round kept (as dicts, for the coverage).
    """

    plan: Callable[[int, Coverage], list[Any]]
    ask: Callable[[int, list[Any]], Any]
    check: Callable[[int, list[Any], Any], tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]]
    kept_seeds: Callable[[dict[str, Any]], list[dict[str, Any]]]


def _seed_dict(item: Any) -> dict[str, Any]:
    seed = item.seed if isinstance(item, Candidate) else item
    return seed.to_json() if hasattr(seed, "to_json") else dict(seed)


def drive_rounds(n_rounds: int, store: Any, steps: RoundSteps, pipeline: bool = True) -> Iterator[dict[str, Any]]:
    """Run (or resume) ``n_rounds`` rounds; yield each round's marker in order.

    ``pipeline=False`` sends round k+1 only after round k was checked (same plans, same output:
    the plan never depends on the overlap), for debugging or a teacher that cannot run beside checks.
    """
    kept_cov = Coverage()  # what rounds < k-1 kept (updated once round k-1 is checked)
    drawn_prev: list[Any] = []
    seeds: dict[int, list[Any]] = {}

    def plan(k: int) -> list[Any]:
        cov = kept_cov.copy()
        for s in drawn_prev:
            cov.add(_seed_dict(s))
        return steps.plan(k, cov)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="synth-ask") as pool:
        pending: Future | None = None
        if n_rounds:
            seeds[0] = plan(0)
            if store.done(0) is None:
                pending = pool.submit(steps.ask, 0, seeds[0])
        for k in range(n_rounds):
            marker = store.done(k)
            replies = pending.result() if pending is not None else None
            pending = None
            if k + 1 < n_rounds:
                drawn_prev = seeds[k]
                seeds[k + 1] = plan(k + 1)
                if pipeline and store.done(k + 1) is None:
                    pending = pool.submit(steps.ask, k + 1, seeds[k + 1])
            if marker is None:
                kept, rejected, marker = steps.check(k, seeds[k], replies)
                store.write(k, kept, rejected, marker)
            del seeds[k]
            for s in steps.kept_seeds(marker):
                kept_cov.add(s)
            yield marker
            if not pipeline and k + 1 < n_rounds and store.done(k + 1) is None:
                pending = pool.submit(steps.ask, k + 1, seeds[k + 1])
