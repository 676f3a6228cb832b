"""The run's LLM judge as a service: score any texts (e.g. textbooks) the way the judge stage scores files.

Other areas may not import this one, so they reach it through the registry: the ``judge`` entry
names :func:`score_texts` as its ``scorer`` and a stage calls ``ctx.score_texts("judge", texts)``.
The prompt, scoring method, threshold and teacher are the ``[judge]`` section's, so "the run's
judge" means one thing everywhere, and its requests share the run's teacher cache.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textbooklm.quality.config import JudgeConfig

if TYPE_CHECKING:
    from textbooklm.stage_context import StageContext


def score_texts(cfg: JudgeConfig, texts: list[str], ctx: StageContext) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One verdict per text (``score`` in [0, 1] or None with ``reason``), and what judged them.

    The meta dict names the prompt, the teacher's model, the threshold (``judge.llm``'s) and the
    teacher's one-line summary. Needs ``"llm"`` in ``judge.judges``: the heuristic judge measures
    code files and says nothing useful about prose.
    """
    from textbooklm.quality.llm_judge import judge_records
    from textbooklm.quality.prompts import load_template

    if "llm" not in cfg.judges or not cfg.teacher:
        raise ValueError("[judge] has no llm judge (judges = ['heuristic', 'llm'] and a teacher): "
                         "only the llm judge can score prose")
    template = load_template(cfg.llm)
    # Its own ledger (``<stage>.judge``): sharing the caller's stage name with the same model would let
    # two Teacher objects overwrite each other's spend, and so the budget check. Shared by every call
    # of the caller's run (closed when that stage ends): built per call, a local model reloaded per round.
    lazy = ctx.shared_teacher(cfg.teacher, stage=f"{ctx.name}.judge")
    verdicts = judge_records(lazy.get(), texts, cfg.llm, template) if texts else []
    line = lazy.summary()
    meta = {"prompt": template.name, "prompt_sha": template.sha, "scale": template.scale, "teacher": cfg.teacher,
            "model": ctx.teacher_config(cfg.teacher).model, "threshold": cfg.llm.resolved_threshold(),
            "teacher_line": line}
    return verdicts, meta
