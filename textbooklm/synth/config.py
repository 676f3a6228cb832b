"""Config of the synthesis stages: where prompts' variety comes from, what each stage asks, what it keeps.

Both stages name a teacher (a key of ``[teachers]``); the pipeline hashes that teacher's config into
the stage's, so pointing a stage at another model re-runs it. Counts are the only thing that changes
between the offline demo (SmolLM2 on a laptop CPU) and a hosted run of thousands.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from textbooklm.config_base import ADDED_LATER, NOT_HASHED, StrictModel
from textbooklm.sandbox import Limits

DEFAULT_AUDIENCES = ["young learners", "high school students", "college students", "professional developers"]
DEFAULT_STYLES = ["textbook chapter", "hands-on tutorial", "worked examples", "questions and answers"]


Checks = Literal["driver", "executor"]


def checks_field() -> Any:
    """Where a synthesis stage checks its rounds (driver.py); the same output either way."""
    return Field(
        "driver", description="Where a round's checks (parse, sandbox runs, judge or extra solutions, per-round "
        "diversity) run: in the stage's own process beside the next round's requests ('driver'), or as a task on the "
        "run's executor ([run] executor: the local pool or Ray), where the checks of several rounds run at once and "
        "on other machines ('executor'). The output is the same either way, so changing it re-runs nothing.",
        json_schema_extra=NOT_HASHED,
    )


def rounds_ahead_field() -> Any:
    """How far the asks may run ahead of the checks (driver.py): changes the re-weighting, so the output."""
    return Field(
        1, ge=1, le=64, description="Rounds that may be asked before the round before them is checked; round k is "
        "planned (re-weighted) from what rounds < k - rounds_ahead kept. More keeps the teacher busy while slow "
        "checks catch up, at a re-weighting that lags that many rounds (another output, as reproducible).",
        json_schema_extra=ADDED_LATER,
    )


class SeedConfig(StrictModel):
    """The seed sampler: every prompt gets its own topic, audience, style and random words."""

    topics_file: str | None = Field(
        None, description="Topic tree file (indented lines or 'A > B > C' paths; '#' comments); leaves are "
        "topics. Default: the shipped tree of basic coding, data-structure and algorithm topics.",
    )
    audiences: list[str] = Field(
        default_factory=lambda: list(DEFAULT_AUDIENCES), min_length=1, description="Target audiences."
    )
    styles: list[str] = Field(default_factory=lambda: list(DEFAULT_STYLES), min_length=1, description="Styles.")
    words_file: str | None = Field(
        None, description="Random-word list (one per line) for TinyStories-style injection. Default: shipped list."
    )
    random_words: int = Field(2, ge=0, le=10, description="Random words each prompt must use (0 turns it off).")
    excerpt_fraction: float = Field(
        0.0, ge=0, le=1, description="Share of prompts seeded with an excerpt of the filtered corpus (Cosmopedia's "
        "way); needs a `filter` stage in the same run, else no excerpts are used.",
    )
    excerpt_chars: int = Field(600, ge=50, description="Longest corpus excerpt put into a prompt, in characters.")
    reweight: float = Field(
        1.0, ge=0, description="Pull toward under-covered seeds: a value drawn k times so far gets weight "
        "1/(1+k)**reweight (0 = uniform sampling).",
    )


class DiversityConfig(StrictModel):
    """How diversity is measured (reported, and near duplicates optionally dropped)."""

    ngram: int = Field(5, ge=1, description="MinHash shingle size, in words.")
    num_perm: int = Field(128, ge=8, description="MinHash permutations.")
    bands: int = Field(32, ge=1, description="LSH bands (num_perm must be a multiple).")
    threshold: float = Field(0.7, gt=0, le=1, description="Estimated Jaccard at which two samples are near duplicates.")
    drop_near_duplicates: bool = Field(True, description="Reject all but the first sample of a near-duplicate cluster.")
    openings_words: int = Field(6, ge=1, description="Words in a sample's 'opening' (repeated openings).")


class TextbooksConfig(StrictModel):
    """`synth textbooks`: a teacher writes short textbook sections; their code blocks are run in the sandbox."""

    teacher: str = Field("smollm2", description="Name of the teacher ([teachers.NAME]) that writes the textbooks.")
    count: int = Field(12, ge=1, description="Textbooks to ask for.")
    per_round: int = Field(8, ge=1, description="Prompts per round; a round is the unit of resume and re-weighting.")
    max_tokens: int = Field(256, ge=16, description="Longest textbook, in new tokens.")
    temperature: float = Field(0.8, ge=0, description="Sampling temperature.")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling mass.")
    template: str | None = Field(
        None, description="Prompt template file ($topic, $audience, $style, $words, $excerpt). Default: shipped."
    )
    seeds: SeedConfig = Field(default_factory=SeedConfig)
    min_chars: int = Field(200, ge=0, description="Shorter textbooks are rejected as 'too-short'.")
    run_code: bool = Field(True, description="Execute every runnable Python block in the sandbox and store its result.")
    drop_failing_code: bool = Field(
        False, description="Reject textbooks with a Python block that does not parse or fails when run ('code-failed')."
    )
    require_code: bool = Field(False, description="Reject textbooks without any Python block ('no-code').")
    drop_cut_off: bool = Field(
        True, description="A reply that ended at max_tokens mid-sentence or mid-block keeps its complete sections "
        "(if still min_chars long), else it is rejected ('cut-off').",
    )
    max_prompt_echo: float = Field(
        0.3, gt=0, le=1, description="Reject a reply repeating at least this share of the prompt's word 8-grams, or "
        "opening with the prompt ('prompt-echo'; 1 keeps all but replies that open with the prompt).",
    )
    judge: bool = Field(
        False, description="Score every textbook that passed the other checks with the run's LLM judge ([judge]: its "
        "prompt, teacher and method) and reject those below judge_min_score ('low-educational-value'; a textbook "
        "the judge could not score is 'judge-failed'). Needs [judge] with 'llm' in judges.",
        json_schema_extra=ADDED_LATER,
    )
    judge_min_score: float | None = Field(
        None, ge=0, le=1, description="Normalised judge score a textbook needs to be kept; unset: the judge's llm "
        "threshold.", json_schema_extra=ADDED_LATER,
    )
    sandbox: Limits = Field(default_factory=lambda: Limits(timeout_s=3.0, memory_mb=1024))
    diversity: DiversityConfig = Field(default_factory=DiversityConfig)
    pipeline: bool = Field(
        True, description="Send round k+1's requests while round k is checked (the plans, and so the output, "
        "are the same either way; off: one round after the other).", json_schema_extra=ADDED_LATER,
    )
    checks: Checks = checks_field()
    rounds_ahead: int = rounds_ahead_field()

    def consulted_stages(self) -> tuple[str, ...]:
        """The judge's config decides what is kept when textbooks are judged (run.consulted_stages)."""
        return ("judge",) if self.judge else ()


class CorpusMiningConfig(StrictModel):
    """Exercises mined from the filtered corpus (``source`` includes "corpus"): real documented functions,
    tests from running them in the sandbox."""

    count: int = Field(200, ge=1, description="Stop mining after the round (one corpus shard) that reaches this many "
                       "verified exercises.")
    min_lines: int = Field(3, ge=1, description="Shortest function mined, in source lines (signature to end).")
    max_lines: int = Field(60, ge=1, description="Longest function mined, in source lines.")
    max_per_file: int = Field(20, ge=1, description="Most candidates taken from one file (variety).")
    inputs: int = Field(12, ge=1, le=64, description="Inputs tried per function: its doctest calls, then type-aware "
                        "generated ones (annotations, defaults, doctest values, body constants, mutations).")
    per_call_s: float = Field(0.25, gt=0, description="Longest single call of the original function; slower inputs "
                              "are dropped (too-slow when all are).")
    rewrite_docstring: bool = Field(
        False, description="Ask the stage's teacher to rewrite each kept function's docstring (never its body or "
        "tests); a reply that is not a plain docstring keeps the original.",
    )

    @model_validator(mode="after")
    def _lines(self) -> CorpusMiningConfig:
        if self.min_lines > self.max_lines:
            raise ValueError(f"min_lines ({self.min_lines}) > max_lines ({self.max_lines})")
        return self


class SeparationConfig(StrictModel):
    """Tests must separate the reference from wrong code (separation.py): every verified exercise's tests
    are run against its trivial candidates (``return <arg>``, ``None``, its most common expected value, an
    empty value) and mutants of its reference; weak tests are strengthened with more inputs (mined
    exercises) or rejected as 'weak-tests'."""

    trivial: bool = Field(True, description="Reject an exercise whose tests a trivial candidate passes.")
    mutants: int = Field(8, ge=0, le=32, description="Mutants of the reference run per exercise (0: none).")
    min_mutation_score: float = Field(
        0.5, ge=0, le=1, description="Share of its mutants an exercise's tests must kill (an exercise with no "
        "mutable code is judged on the trivial candidates alone).",
    )
    timeout_s: float = Field(
        1.0, gt=0, description="Wall limit of one candidate's run (raised to the sandbox's timeout_factor times "
        "the reference's verification time when larger): a mutant that loops is killed, cheaply.",
    )
    extra_inputs: int = Field(
        24, ge=0, le=64, description="Mined exercises whose tests are weak get up to this many more generated "
        "inputs; those on which the reference and a surviving candidate differ become tests (0: no "
        "strengthening, weak ones are rejected at once).",
    )


ExerciseSource = Literal["teacher", "corpus"]


class ExercisesConfig(StrictModel):
    """`synth exercises`: HumanEval-style exercises, kept only if verified: written by a teacher (one per function
    name) and/or mined from the filtered corpus with tests from execution."""

    source: ExerciseSource | list[ExerciseSource] = Field(
        "teacher", description="Where exercises come from: 'teacher' (a teacher writes one per function name), "
        "'corpus' (documented functions of the filtered corpus, tests from running them), or both as a list.",
    )
    corpus: CorpusMiningConfig = Field(default_factory=CorpusMiningConfig)
    teacher: str | None = Field(
        "smollm2", description="Name of the teacher ([teachers.NAME]) that writes the exercises (and rewrites mined "
        "docstrings). Cleared when nothing asks a teacher (source 'corpus' without rewrite_docstring), so a "
        "corpus-only run needs no [teachers] table.",
    )
    count: int = Field(40, ge=1, description="Exercises to ask for (one per function name).")
    per_round: int = Field(16, ge=1, description="Prompts per round; a round is the unit of resume and re-weighting.")
    max_tokens: int = Field(192, ge=16, description="Longest reply, in new tokens.")
    temperature: float = Field(0.7, ge=0, description="Sampling temperature.")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling mass.")
    template: str | None = Field(
        None, description="Exercise prompt template ($name, $signature, $topic, $audience, $words). Default: shipped."
    )
    solution_template: str | None = Field(
        None, description="Template asking for another solution ($prompt, $name) when solutions > 1. Default: shipped."
    )
    names_file: str | None = Field(
        None, description="Function names to use first, one per line ('name' or 'name(params)'); the generated "
        "topic x verb x data-structure pool fills the rest.",
    )
    seeds: SeedConfig = Field(default_factory=lambda: SeedConfig(random_words=0))
    tests_from: Literal["teacher", "consensus"] = Field(
        "teacher", description="Where an exercise's tests come from. 'teacher': the asserts in its reply. "
        "'consensus': only the inputs of the calls in its reply (asserts, prints, bare calls); the expected "
        "values come from running the reply's solution and solutions - 1 more solutions sampled from the prompt "
        "in the sandbox, keeping the inputs on which all of them return the same literal value (AlphaCode/CodeT "
        "style; for a weak teacher whose code is right more often than its asserted values).",
    )
    solutions: int | None = Field(
        None, ge=1, le=8, description="Solutions per exercise, its own included (default 1 with teacher tests, 3 "
        "with consensus). teacher: with more than 1, extra solutions sampled from the prompt must pass its tests "
        "('disagree' otherwise). consensus: at least 2; every solution must agree on an input for it to be a test.",
    )
    solution_max_tokens: int | None = Field(
        None, ge=16, description="Longest extra solution, in new tokens (default: max_tokens). A solution is "
        "shorter than an exercise, and the teacher's time is the stage's cost.",
    )
    generate_inputs: bool = Field(
        True, description="Consensus mode: a reply whose function parses but whose calls give fewer than min_tests "
        "inputs gets type-aware inputs generated from the function's signature (annotations, defaults, names, "
        "usage); only inputs on which all solutions agree become tests.",
    )
    min_tests: int = Field(2, ge=1, description="Fewest assert statements an exercise's tests must have.")
    separation: SeparationConfig = Field(default_factory=SeparationConfig)
    checks: Checks = checks_field()
    rounds_ahead: int = rounds_ahead_field()
    sandbox: Limits = Field(default_factory=lambda: Limits(timeout_s=3.0, memory_mb=1024))
    diversity: DiversityConfig = Field(default_factory=lambda: DiversityConfig(threshold=0.85))

    @model_validator(mode="after")
    def _consensus_needs_two(self) -> ExercisesConfig:
        if self.tests_from == "consensus" and self.solutions is not None and self.solutions < 2:
            raise ValueError(f"tests_from = 'consensus' needs solutions >= 2 (got {self.solutions}): agreement "
                             "needs another solution besides the exercise's own")
        return self

    @property
    def sources(self) -> list[str]:
        """``source`` as a list without repeats, in the order given."""
        items = [self.source] if isinstance(self.source, str) else self.source
        return list(dict.fromkeys(items))

    @model_validator(mode="after")
    def _some_source(self) -> ExercisesConfig:
        if not self.sources:
            raise ValueError("exercises.source is empty: name 'teacher', 'corpus' or both")
        if self.teacher is not None and not self.needs_teacher:
            self.teacher = None
        elif self.teacher is None and self.needs_teacher:
            raise ValueError("exercises.teacher is unset, but source 'teacher' or corpus.rewrite_docstring asks one")
        return self

    @property
    def needs_teacher(self) -> bool:
        """Whether any part of the stage asks a teacher."""
        return "teacher" in self.sources or ("corpus" in self.sources and self.corpus.rewrite_docstring)

    @property
    def n_solutions(self) -> int:
        """Solutions per exercise with the mode's default applied."""
        if self.solutions is not None:
            return self.solutions
        return 3 if self.tests_from == "consensus" else 1
