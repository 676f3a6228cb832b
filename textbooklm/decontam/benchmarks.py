"""Benchmark problems as references: their texts (for n-grams and embeddings) and function trees."""

from __future__ import annotations

from dataclasses import dataclass

from textbooklm.code_tasks import load_problems
from textbooklm.decontam.config import BenchmarkSpec, DecontamConfig
from textbooklm.decontam.trees import FunctionTree, function_trees
from textbooklm.problems import Problem


@dataclass
class Reference:
    """One benchmark problem: its id, its reference texts and its normalized functions."""

    problem_id: str
    benchmark: str
    texts: list[str]  # prompt, prompt + solution (the whole function), tests
    functions: list[FunctionTree]

    @property
    def code(self) -> str:
        return self.texts[1]


def reference_of(problem: Problem, benchmark: str, cfg: DecontamConfig) -> Reference:
    code = problem.prompt + (problem.canonical_solution or "")
    funcs = function_trees(code, cfg.ast_min_nodes, cfg.ast_max_nodes, cfg.max_functions)
    return Reference(problem.task_id, benchmark, [problem.prompt, code, problem.test], funcs)


def load_references(cfg: DecontamConfig) -> list[Reference]:
    """Every problem of every configured benchmark; problem ids must be unique across them."""
    refs: list[Reference] = []
    seen: dict[str, str] = {}
    for spec in cfg.benchmarks:
        for problem in load_benchmark(spec):
            if problem.task_id in seen:
                raise ValueError(
                    f"problem id {problem.task_id!r} appears in both {seen[problem.task_id]} and {spec.task} "
                    f"({spec.path or 'bundled'}); give each benchmark distinct task ids"
                )
            seen[problem.task_id] = spec.task
            refs.append(reference_of(problem, spec.task, cfg))
    return refs


def load_benchmark(spec: BenchmarkSpec) -> list[Problem]:
    return load_problems(spec.task, spec.path)
