"""The rounds driver of both synthesis stages: plan, ask, check, write, with the teacher kept busy.

A round is planned (its seeds drawn), asked (its prompts sent through the teacher), checked (parse,
sandbox, judge) and written (round files, then its marker: rounds.py). Done strictly one after the
other, the teacher waits while a round is checked, and the checks wait while it answers: measured
on a 2-core box, the server was busy 15% of the wall. Here the next rounds' requests are in flight
(on a background thread, one round after the other) while earlier rounds are checked, either on the
caller's thread or, with ``start_check``, on the run's executor (local pool or Ray), where the checks
of several rounds run at once and on other machines.

That needs round k to be planned before the verdicts of the rounds just before it exist, so the
re-weighting runs ``ahead`` rounds behind: round k is planned from what rounds < k - ahead *kept* plus
everything rounds k - ahead .. k - 1 *drew* (drawn values are counted at once, so rounds in flight do
not pile onto the same topics; a rejected seed comes back ``ahead`` rounds later). Everything a plan
reads is known from marked rounds and the seed, so a killed run re-plans its unfinished rounds
identically, finds their replies in the request cache, and sends only the rest; and where the checks
run (and how long they take) never changes a plan. ``ahead`` (the stage's ``rounds_ahead``) is how
many rounds may be asked before the one before them is checked: 1 keeps one round's requests in
flight beside one round's checks; more lets slow checks fall behind without stopping the asks.

Ask and check may both use the teacher (exercises ask for extra solutions while checking): the
stage's teacher must serialise its calls (``lazy_services.LazyTeacher`` holds a lock), which still
overlaps the check's sandbox and parsing work with the next round's requests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
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
    - ``kept_seeds(marker)`` -> the seeds a finished round kept (as dicts, for the coverage);
    - ``start_check(k, planned, replies)`` (optional) -> a Future of the marker, the check and the writes done
      elsewhere (an executor worker) instead of ``check`` + write on the driver's thread.
    """

    plan: Callable[[int, Coverage], list[Any]]
    ask: Callable[[int, list[Any]], Any]
    check: Callable[[int, list[Any], Any], tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]]
    kept_seeds: Callable[[dict[str, Any]], list[dict[str, Any]]]
    # Round k's check run elsewhere (the run's executor): (k, planned, replies) -> a Future of the round's
    # marker, the round's files and marker written by whoever runs it. None: ``check`` on the driver's thread.
    start_check: Callable[[int, list[Any], Any], Future] | None = None


def _seed_dict(item: Any) -> dict[str, Any]:
    seed = item.seed if isinstance(item, Candidate) else item
    return seed.to_json() if hasattr(seed, "to_json") else dict(seed)


def drive_rounds(n_rounds: int, store: Any, steps: RoundSteps, pipeline: bool = True,
                 ahead: int = 1) -> Iterator[dict[str, Any]]:
    """Run (or resume) ``n_rounds`` rounds; yield each round's marker in order.

    ``ahead`` (>= 1): the plan of round k reads what rounds < k - ahead kept (module docstring).
    ``pipeline=False`` asks round k only once round k-1 was checked (same plans, same output: the plan
    never depends on the overlap), for debugging or a teacher that cannot run beside checks.
    """
    if ahead < 1:
        raise ValueError(f"rounds ahead must be >= 1, got {ahead}")
    kept_cov = Coverage()  # what rounds < kept_upto kept
    kept_upto = 0
    kept_of: dict[int, list[dict[str, Any]]] = {}  # kept seeds of yielded rounds not yet in kept_cov
    drawn: dict[int, list[Any]] = {}  # the planned rounds' seeds, until no later plan reads them
    asks: dict[int, Future] = {}  # rounds being asked (in order, one after the other)
    checks: dict[int, Future] = {}  # rounds being checked
    planned = done = 0  # rounds planned; rounds yielded

    def plan(k: int) -> list[Any]:
        nonlocal kept_upto
        while kept_upto < k - ahead:  # those rounds were yielded: their kept seeds are known
            for s in kept_of.pop(kept_upto):
                kept_cov.add(s)
            kept_upto += 1
        cov = kept_cov.copy()
        for j in range(max(0, k - ahead), k):
            for s in drawn[j]:
                cov.add(_seed_dict(s))
        for j in [j for j in drawn if j < k - ahead]:
            del drawn[j]
        return steps.plan(k, cov)

    def check_here(k: int, seeds: list[Any], replies: Any) -> Future:
        kept, rejected, marker = steps.check(k, seeds, replies)
        store.write(k, kept, rejected, marker)
        fut: Future = Future()
        fut.set_result(marker)
        return fut

    start_check = steps.start_check or check_here
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="synth-ask")
    try:
        while done < n_rounds:
            # plan (and queue the asks of) every round the window allows
            while planned < n_rounds and planned - ahead <= done and (pipeline or planned <= done):
                k = planned
                drawn[k] = plan(k)
                planned += 1
                if store.done(k) is None:
                    asks[k] = pool.submit(steps.ask, k, drawn[k])
            # yield the next round once its marker is there (before starting later checks: its yield
            # lets the next round be planned and asked while they run)
            if done in checks and checks[done].done() or (done not in checks and done not in asks):
                fut = checks.pop(done, None)
                marker = fut.result() if fut is not None else store.done(done)
                if marker is None:
                    raise RuntimeError(f"round {done} has neither a marker nor a check")
                kept_of[done] = list(steps.kept_seeds(marker))
                done += 1
                yield marker
                continue
            # hand the earliest answered round to its check
            if asks and asks[min(asks)].done():
                k = min(asks)
                checks[k] = start_check(k, drawn[k], asks.pop(k).result())
                continue
            waiting = [asks[min(asks)]] if asks else []
            if done in checks:
                waiting.append(checks[done])
            wait(waiting, return_when=FIRST_COMPLETED)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # queued asks are not sent; a running one ends
