"""A small real run of every stage, for the report tests: real corpus files, a real HTTP teacher on
127.0.0.1 (the test echo server: its LLM judge scores all sit at one value, a degenerate judge the
report must flag), exercises mined from the files with tests from the real sandbox, decontam with
held-out exercises, a pack that repeats the one kept textbook past 4 epochs (heavy repetition, also
flagged), a nano model pretrained and finetuned for a few steps, and a small eval.

Built once per test session (about a minute on two cores); ``python tests/report/small_run.py DIR``
builds one by hand to look at.
"""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))  # the test fakes: fakes.echo_server


def _module(relative: str):
    """A test helper module loaded from its file, under its own name (never by a bare ``conftest``
    import, which would pick whichever conftest is first on sys.path)."""
    import importlib.util

    name = "report_small_run_" + relative.replace("/", "_").removesuffix(".py")
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, TESTS / relative)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module

KEY_ENV = "TEXTBOOKLM_TEST_REPORT_KEY"


def corpus(root: Path) -> Path:
    """Documented utility modules (mined into exercises), their undocumented copies (caught by
    decontam's AST match against held-out exercises), and good and bad files for the judges."""
    folder = _module("decontam/test_decontam_heldout.py").corpus_folder(root / "code")
    _module("quality/quality_fixtures.py").make_corpus_folder(folder, n_good=10, n_bad=10)
    return folder


def config(root: Path, judge_url: str, writer_url: str) -> dict:
    teacher = {"backend": "openai", "api_key_env": KEY_ENV, "max_retries": 0, "timeout_s": 10.0}
    return {
        "run": {"workers": 1, "seed": 0},
        "teachers": {"judge": {**teacher, "model": "echo", "base_url": judge_url},
                     "writer": {**teacher, "model": "scripted", "base_url": writer_url}},
        "corpus": {"sources": [{"kind": "folder", "path": str(corpus(root))}], "dedup": {"near": False},
                   "filters": {"min_lines": 1}},
        "judge": {"judges": ["heuristic", "llm"], "label_from": "heuristic", "teacher": "judge",
                  "heuristic": {"threshold": 0.5},
                  "llm": {"prompt": "fineweb-edu", "sample": 12, "max_file_tokens": 64}},
        "classify": {"embedder": "hashing-256", "n_estimators": 10, "test_fraction": 0.3},
        "filter": {},  # the classifier's own cut: some files kept, some dropped
        "textbooks": {"teacher": "writer", "count": 4, "per_round": 4},
        "exercises": {"source": "corpus", "min_tests": 3, "sandbox": {"timeout_s": 3.0},
                      "corpus": {"inputs": 10, "per_call_s": 0.2}},
        "decontam": {"embedder": "hashing", "heldout_fraction": 0.5, "rows_per_task": 4},
        "tokenizer": {"kind": "bpe", "vocab_size": 300},
        # Half the pack from the few textbook tokens: they are repeated well past 4 epochs.
        "pack": {"sources": [{"dataset": "filter", "weight": 0.5}, {"dataset": "textbooks", "weight": 0.5}],
                 "total_tokens": 3000, "max_epochs": 20, "val_fraction": 0.1},
        "pretrain": {"model": {"preset": "nano"}, "max_steps": 4, "batch_size": 2, "micro_batch_size": 2,
                     "eval_every": 2, "save_every": 4, "log_every": 1},
        "finetune": {"max_steps": 2, "batch_size": 2, "micro_batch_size": 2, "eval_every": 2, "save_every": 2,
                     "log_every": 1, "loss_on": "completion",
                     "data": {"sources": [{"dataset": "exercises"}], "loss_on": "completion", "val_fraction": 0.5}},
        "eval": {"models": ["pretrain", "finetune"], "humaneval_limit": 3, "n_samples": 2, "max_new_tokens": 8,
                 "batch_size": 8, "heldout_exercises": {"dataset": "exercises", "fraction": 0.5},
                 "corpus_validation": {"documents": 4, "tokens_per_document": 64}},
        "report": {},
    }


def build(root: Path) -> Path:
    """Run every stage into ``root/run`` (teachers served from this process while it runs)."""
    import os

    from fakes.echo_server import EchoServer

    from textbooklm.config import parse_config
    from textbooklm.pipeline import run_pipeline

    os.environ[KEY_ENV] = "sk-report-test"
    writer = EchoServer(latency_s=0.0)
    writer._httpd.RequestHandlerClass = _module("synth/conftest.py").ScriptedHandler  # scripted textbooks
    with EchoServer(latency_s=0.0) as judge, writer:
        run_pipeline(parse_config(config(root, judge.base_url, writer.base_url)), root / "run")
    return root / "run"


if __name__ == "__main__":
    print(build(Path(sys.argv[1])))
