"""``StageContext``: everything a stage may use besides its own config section and inputs.

Why typed and narrow: a stage that reads the whole pipeline config couples itself to every other
stage; here it gets the seed, the executor, the teachers by name (with the run's request cache), a
sandbox, and datasets by name through the one naming rule of :class:`textbooklm.run.Run`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textbooklm.store import Dataset

if TYPE_CHECKING:
    import pyarrow as pa

    from textbooklm.config import RunConfig
    from textbooklm.executor import Submitter
    from textbooklm.lazy_services import LazySandbox, LazyTeacher
    from textbooklm.ledger import StageLedger
    from textbooklm.run import Run
    from textbooklm.sandbox import Limits
    from textbooklm.teacher import Teacher, TeacherConfig


@dataclass
class StageContext:
    """Handed to every stage function as ``ctx``: ``run(config, inputs, out, ctx) -> Dataset``."""

    name: str
    owner: Run  # the run folder and its naming rule; stages reach it through the methods below
    run: RunConfig  # the [run] settings: seed, executor, workers
    config_hash: str = ""
    teachers: dict[str, TeacherConfig] = field(default_factory=dict)
    _shared: dict[tuple[str, str], LazyTeacher] = field(default_factory=dict, repr=False)
    # True in an executor worker's copy (synth/check_worker.py): its teachers write their own cache file in
    # the run's cache folder (as teacher drivers do), never the main one the stage's process writes
    own_cache_file: bool = False

    # -- plain settings -----------------------------------------------------------------------
    @property
    def seed(self) -> int:
        return self.run.seed

    @property
    def workers(self) -> int:
        """Worker processes for data stages (0 = one per core)."""
        return self.run.workers

    @property
    def run_dir(self) -> Path:
        return self.owner.folder

    # -- shared services ----------------------------------------------------------------------
    def map(self, fn: Callable[[dict[str, Any]], dict[str, Any]], tasks: list[dict[str, Any]],
            marker_dir: str | Path, description: str = "shards") -> dict[str, dict[str, Any]]:
        """Run ``fn`` over ``tasks`` on the configured executor (resumable through shard markers)."""
        from textbooklm.executor import map_shards

        return map_shards(fn, tasks, marker_dir, executor=self.run.executor, workers=self.run.workers,
                          ray_address=self.run.ray_address, description=description)

    def submitter(self) -> Submitter:
        """The configured executor, one task at a time (``with ctx.submitter() as s: s.submit(fn, task, markers)``).

        For a stage that hands work over as it becomes ready (the synth driver's round checks) instead of
        mapping a known list; same resumable contract as :meth:`map`.
        """
        from textbooklm.executor import Submitter

        return Submitter(self.run.executor, self.run.workers, self.run.ray_address)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled for an executor worker (a check that scores with the run's judge): without the shared
        teachers, which hold locks and a loaded model; the worker builds its own."""
        return {**self.__dict__, "_shared": {}}

    def ledger(self, in_means: str = "records", rejected_schema: pa.Schema | None = None) -> StageLedger:
        """This stage's ledger of verdicts (kept / dropped with a reason / counters), see ``ledger.py``.

        Its ``finish()`` gives the summary (counts and line) that ``status``, ``run.json`` and the report
        read, and writes ``rejected/``: a stage never builds those by hand.
        """
        from textbooklm.ledger import StageLedger

        return StageLedger(self.name, self.owner.stage_dir(self.name), in_means, rejected_schema, self.config_hash)

    def teacher_config(self, name: str) -> TeacherConfig:
        """The named teacher's config; an unknown name is an error listing the configured ones."""
        if name not in self.teachers:
            known = ", ".join(sorted(self.teachers)) or "none"
            raise ValueError(f"[{self.name}] teacher = {name!r}, but the config has no [teachers.{name}] table "
                             f"(configured: {known})")
        return self.teachers[name]

    def teacher(self, name: str, stage: str | None = None) -> Teacher:
        """A ready Teacher whose request cache is the run's (never inside this stage's folder)."""
        from textbooklm.teacher import build_teacher

        return build_teacher(self.teacher_config(name), cache_dir=self.owner.teacher_cache_dir,
                             stage=stage or self.name, driver=self.own_cache_file)

    def sandbox(self, limits: Limits) -> Any:
        """A sandbox pool with these limits and the run's worker count (closed by the caller)."""
        from textbooklm.sandbox import SandboxPool

        return SandboxPool(limits, workers=self.run.workers or None)

    def lazy_teacher(self, name: str, stage: str | None = None) -> LazyTeacher:
        """The named teacher, built on first use, thread-safe (``lazy_services.py``); closed by the caller.

        For a stage whose re-run may have nothing left to ask: a finished one never loads the model.
        """
        from textbooklm.lazy_services import LazyTeacher

        return LazyTeacher(self.teacher_config(name), self.owner.teacher_cache_dir, stage or self.name, name,
                           driver=self.own_cache_file)

    def shared_teacher(self, name: str, stage: str | None = None) -> LazyTeacher:
        """One lazy teacher per (name, ledger stage) for this whole stage run, closed by :meth:`close`.

        For a service called once per round (the judge scoring each round's textbooks): a teacher built
        and closed per call reloaded a local model every round.
        """
        key = (name, stage or self.name)
        if key not in self._shared:
            self._shared[key] = self.lazy_teacher(name, stage)
        return self._shared[key]

    def close(self) -> None:
        """Close the shared services (the pipeline calls it when the stage returns or fails)."""
        shared, self._shared = list(self._shared.values()), {}
        for teacher in shared:
            teacher.close()

    def lazy_sandbox(self, limits: Limits) -> LazySandbox:
        """One warm sandbox pool with these limits, started only if a program runs; closed by the caller."""
        from textbooklm.lazy_services import LazySandbox

        return LazySandbox(limits, self.run.workers)

    def score_texts(self, stage: str, texts: list[str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Score ``texts`` the way ``stage`` does (its registry ``scorer``, with the run's config for it).

        How one area uses another's model (the judge) without importing it; the caller's section lists
        ``stage`` in ``consulted_stages()`` so a change of that config re-runs the caller.
        """
        from textbooklm import registry

        hook = registry.resolve_hook(registry.get(stage).scorer)
        section = getattr(self.owner.cfg, stage, None) if self.owner.cfg is not None else None
        if hook is None or section is None:
            raise ValueError(f"[{self.name}] asks the {stage} stage to score texts, but "
                             + (f"this config has no [{stage}] section" if hook else f"{stage} has no scorer"))
        return hook(section, texts, self)

    def dataset(self, name: str, *, unfiltered: bool = False) -> Dataset:
        """A dataset by name as this stage sees it (filtered and decontaminated where that ran before it)."""
        return self.owner.dataset(name, before=self.name, unfiltered=unfiltered)

    def training_sources(self, kind: str | None) -> list[str]:
        """Default training datasets before this stage: ``pretrain``, ``finetune`` or None (all)."""
        return self.owner.training_sources(kind, before=self.name)  # type: ignore[arg-type]
