"""One model on one evaluation set: the figure, what it was measured on, its uncertainty, how it was made.

Every figure eval reports is a :class:`Measured`: besides its value it keeps the units it averages
over (problem ids, document numbers) with each unit's numerator and denominator, so that

* its interval is computed from the same numbers (a bootstrap over units for NLL per token, the
  lm-eval-harness standard error for pass@k and accuracies),
* two models can be compared unit by unit (:mod:`textbooklm.evals.uncertainty`), and
* a reader can check that two models were measured on the same set (same ``n``, same ``ids_sha``).

Sampled figures also carry their sampling settings and what the samples were (empty share, failure
kinds, the sentence a zero needs).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from textbooklm.evals.execute import read_samples, score
from textbooklm.evals.generate import SamplingSettings, generate_samples
from textbooklm.evals.passk import pass_at_k
from textbooklm.evals.uncertainty import RESAMPLES, bootstrap_ratio_interval, mean_stderr, ratio
from textbooklm.problems import Problem
from textbooklm.progress import progress_bar
from textbooklm.store import atomic_write_json


def ids_sha(ids: list[str]) -> str:
    """A short fingerprint of a set's units, in order: equal for two models measured on the same set."""
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


@dataclass
class Measured:
    """One metric of one model, with the per-unit numbers behind it."""

    metric: str  # e.g. "humaneval pass@1", "corpus validation NLL/token"
    unit: str  # what the set is made of: problems, documents, questions
    ids: list[str]  # the units, in the set's order (the same for every model)
    num: list[float]  # per unit: numerator (pass@k in %, nats, 1 if correct)
    den: list[float]  # per unit: denominator (1, tokens, 1)
    higher_is_better: bool
    stderr: float | None = None  # lm-eval-harness standard error of a mean over units
    interval: tuple[float, float] | None = None  # bootstrap percentile interval over units
    details: dict[str, Any] = field(default_factory=dict)  # sampling settings, empty share, zero note, ...

    @property
    def value(self) -> float:
        return ratio(self.num, self.den)

    def record(self) -> dict[str, Any]:
        """The JSON form in results.json (no per-unit arrays: those go to LABEL.units.json)."""
        out: dict[str, Any] = {"value": _round(self.value), "n": len(self.ids), "unit": self.unit,
                               "ids_sha": ids_sha(self.ids)}
        if self.stderr is not None:
            out["stderr"] = _round(self.stderr)
        if self.interval is not None:
            out["interval"] = [_round(x) for x in self.interval]
        return {**out, **self.details}


def _round(x: float) -> float | None:
    return round(float(x), 6) if x is not None and math.isfinite(x) else None


def mean_measure(metric: str, unit: str, ids: list[str], values: list[float], higher_is_better: bool,
                 details: dict[str, Any] | None = None) -> Measured:
    """A mean over units (pass@k, accuracy) with lm-eval-harness's standard error."""
    return Measured(metric, unit, ids, list(values), [1.0] * len(values), higher_is_better,
                    stderr=mean_stderr(values), details=details or {})


def nll_measure(metric: str, unit: str, ids: list[str], nats: list[float], tokens: list[float],
                details: dict[str, Any] | None = None, seed: int = 0) -> Measured:
    """NLL per token (nats summed over tokens summed) with a bootstrap interval over units."""
    return Measured(metric, unit, ids, list(nats), list(tokens), False,
                    interval=bootstrap_ratio_interval(nats, tokens, seed=seed),
                    details={"interval_method": f"95% percentile bootstrap over {unit}, {RESAMPLES} resamples",
                             **(details or {})})


def sampling_record(settings: SamplingSettings) -> dict[str, Any]:
    """The settings that decide what a sample is, as written next to every sampled figure."""
    return {"decoding": "greedy" if settings.temperature <= 0 else "sampled", "temperature": settings.temperature,
            "top_p": settings.top_p, "n": settings.n, "max_new_tokens": settings.max_new_tokens,
            "stop": list(settings.stop), "seed": settings.seed}


def code_task_summary(label: str, task: str, problems: list[Problem], sampler: Any, settings: SamplingSettings,
                      limits: Any, out: Path, workers: int | None) -> dict[str, Any]:
    """Sample completions (resuming ``OUT/LABEL.TASK.samples.jsonl``), run them in the sandbox; the summary."""
    samples_path = out / f"{label}.{task}.samples.jsonl"
    with progress_bar(f"eval {label}: {task} generate", total=len(problems)) as advance:
        generate_samples(sampler, problems, settings, samples_path, {"task": task}, progress=advance)
    samples = read_samples(samples_path)
    with progress_bar(f"eval {label}: {task} execute", total=len(samples)) as advance:
        records, summary = score(problems, samples, limits, workers, ks=(1, 10, 100), progress=advance)
    summary["sampling"] = sampling_record(settings)
    with (out / f"{label}.{task}.results.jsonl").open("w") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in records)
    atomic_write_json(out / f"{label}.{task}.results.json", summary)
    return summary


def code_task_measures(task: str, problems: list[Problem], summary: dict[str, Any]) -> list[Measured]:
    """pass@k of ``task`` (in %) with n, standard error, sampling settings and what the samples were."""
    by_id = {p["task_id"]: p for p in summary["per_problem"]}
    ids = [p.task_id for p in problems if p.task_id in by_id]
    what = {"samples_per_problem": summary["n"], "samples": summary["samples"], "empty": summary["empty"],
            "empty_share": summary["empty_share"], "failure_kinds": summary["failure_kinds"],
            "sampling": summary["sampling"], "limits": summary["limits"]}
    measured = []
    for name in summary["pass_at_k"]:
        k = int(name.split("@")[1])
        values = [100 * pass_at_k(by_id[t]["n"], by_id[t]["passed"], k) for t in ids]
        details = dict(what)
        if k == 1 and "zero_note" in summary:
            details["zero_note"] = summary["zero_note"]
        measured.append(mean_measure(f"{task} {name}", "problems", ids, values, True, details))
    return measured


def canonical_nll_per_problem(scorer: Any, problems: list[Problem]) -> tuple[list[str], list[float], list[float]]:
    """(task ids, nats, tokens) of each problem's known-good solution given its prompt."""
    with_solution = [p for p in problems if p.canonical_solution]
    scores = scorer.loglikelihood([(p.prompt, p.canonical_solution) for p in with_solution], batch_size=8)
    return ([p.task_id for p in with_solution], [-s.total for s in scores], [float(s.n_tokens) for s in scores])


def solution_nll_measure(metric: str, scorer: Any, problems: list[Problem], seed: int = 0) -> Measured:
    """NLL per token of the problems' reference solutions, with its bootstrap interval over problems."""
    ids, nats, tokens = canonical_nll_per_problem(scorer, problems)
    return nll_measure(metric, "problems", ids, nats, tokens, {"scoring": "teacher-forced, no sampling"}, seed)


def choice_measures(task: str, result: dict[str, Any]) -> list[Measured]:
    """Multiple-choice accuracy and acc_norm with their standard errors (lm-eval-harness's)."""
    preds = result["predictions"]
    ids = [str(p["id"]) for p in preds]
    return [mean_measure(f"{task} {name}", "questions", ids, [float(p[key] == p["label"]) for p in preds], True)
            for name, key in (("acc", "pred"), ("acc_norm", "pred_norm"))]
