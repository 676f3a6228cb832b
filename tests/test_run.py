"""The run owner: one naming rule for datasets, the run-level teacher cache, stale inputs, config check.

Regression tests for issue 14's bugs: the raw corpus reached training by default; changing a
transport field of a teacher re-sent every finished request; ``--only`` ran on a stale input without a
word; ``status`` counted decontam's match rows as kept; ``config check`` passed runs that then died.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from fakes.echo_server import EchoServer
from typer.testing import CliRunner

from textbooklm.cli import app
from textbooklm.config import parse_config
from textbooklm.pipeline import StageNotReady, run_pipeline, run_status
from textbooklm.run import Run
from textbooklm.run_check import check_run
from textbooklm.store import Dataset

KEY_ENV = "TEXTBOOKLM_TEST_RUN_KEY"


def _corpus_folder(root: Path, n: int = 40) -> Path:
    """Half clearly educational files, half clearly not (the heuristic judge separates them)."""
    rng = random.Random(0)
    root.mkdir(parents=True)
    for i in range(n):
        if i % 2 == 0:
            a, b = rng.sample(["total", "price", "count", "width", "speed", "rate", "limit", "level"], 2)
            body = (f'"""Lesson {i}: the {a} from the {b}."""\n\n\n'
                    f'def compute_{a}_{i}({b}: float) -> float:\n'
                    f'    """Return the {a} for a {b} (explained step by step)."""\n'
                    f'    # Double it first, then add the lesson number.\n'
                    f'    doubled = {b} * 2\n    return doubled + {i}\n')
        else:
            body = "".join(f"x{i}_{j}={rng.randint(0, 10**6)};y{i}_{j}=x{i}_{j}*{j}\n" for j in range(12))
        (root / f"f{i:03d}.py").write_text(body)
    return root


def _recipe(folder: Path) -> dict:
    return {
        "run": {"workers": 1},
        "corpus": {"sources": [{"kind": "folder", "path": str(folder)}]},
        "judge": {"judges": ["heuristic"], "heuristic": {"threshold": 0.5}},
        "classify": {"embedder": "hashing-256", "n_estimators": 20, "test_fraction": 0.3},
        "filter": {},
        "decontam": {"embedder": "hashing"},
        "tokenizer": {"kind": "bpe", "vocab_size": 300},  # default sources
        "pack": {"val_fraction": 0.1},  # default sources
    }


@pytest.mark.slow
def test_default_training_sources_are_filtered_and_decontaminated(tmp_path):
    """With a filter and decontam, tokenizer and pack read decontam/filter, never RUN/corpus."""
    cfg = parse_config(_recipe(_corpus_folder(tmp_path / "code")))
    run_dir = tmp_path / "run"
    run_pipeline(cfg, run_dir)
    run = Run(run_dir, cfg)
    cleaned = (run_dir / "decontam" / "filter").resolve()
    assert run.dataset("corpus").path.resolve() == cleaned
    assert run.dataset("filter").path.resolve() == cleaned
    assert run.dataset("corpus", before="judge").path.resolve() == (run_dir / "corpus").resolve()
    assert run.training_sources("pretrain") == ["filter"]
    tok_parents = Dataset(run_dir / "tokenizer").manifest["parents"]
    assert [Path(p).resolve() for p in tok_parents] == [cleaned]
    index = json.loads((run_dir / "pack" / "index.json").read_text())
    assert [s["dataset"] for s in index["sources"]] == ["filter"]
    pack_parents = Dataset(run_dir / "pack").manifest["parents"]
    assert [Path(p).resolve() for p in pack_parents] == [cleaned]
    # decontam was given the filtered corpus only (the raw corpus is not training data any more).
    assert not (run_dir / "decontam" / "corpus").exists()

    # status counts what decontam kept (its cleaned copies), not its match rows.
    rows = {r["stage"]: r for r in run_status(run_dir)}
    assert rows["decontam"]["kept"] == Dataset(cleaned).num_rows
    assert rows["filter"]["in"] == Dataset(run_dir / "corpus").num_rows
    assert rows["filter"]["kept"] + rows["filter"]["rejected"] == rows["filter"]["in"]
    stats = json.loads((run_dir / "filter" / "_stage.json").read_text())["stats"]
    assert set(stats["dropped_by_reason"]) <= {"low-educational-value"}

    # A stale input is refused with --only, naming it.
    changed = parse_config({**_recipe(tmp_path / "code"), "filter": {"threshold": 0.9}})
    with pytest.raises(StageNotReady, match=r"filter \(stale\)"):
        run_pipeline(changed, run_dir, only=["decontam"])
    stale_toml = tmp_path / "changed.toml"
    stale_toml.write_text(_toml({**_recipe(tmp_path / "code"), "filter": {"threshold": 0.9}}))
    result = CliRunner().invoke(app, ["synth", "textbooks", "--out", str(run_dir), "--config", str(stale_toml),
                                      "--teacher", "smollm2"])
    assert result.exit_code == 2 and "filter (stale)" in result.output, result.output


def test_without_filter_the_corpus_is_the_training_data(tmp_path):
    cfg = parse_config({"corpus": {"sources": [{"kind": "stdlib"}]}, "textbooks": {"teacher": "t"},
                        "exercises": {"teacher": "t"},
                        "teachers": {"t": {"backend": "local", "model": "smollm2"}}})
    run = Run(tmp_path, cfg)
    assert run.training_sources("pretrain") == ["corpus", "textbooks"]
    assert run.training_sources("finetune") == ["exercises"]
    assert run.training_sources(None) == ["corpus", "textbooks", "exercises"]
    # Unfiltered on purpose (the ablation's arm A) always means the stage's own output.
    assert run.dataset("corpus", unfiltered=True).path == tmp_path / "corpus"


def _textbooks_config(server: EchoServer, **teacher) -> dict:
    t = {"backend": "openai", "model": "m1", "base_url": server.base_url, "api_key_env": KEY_ENV,
         "concurrency": 2, "max_retries": 1, "timeout_s": 5.0, **teacher}
    return {"run": {"workers": 1}, "teachers": {"t": t},
            "textbooks": {"teacher": "t", "count": 3, "per_round": 3, "max_tokens": 32, "run_code": False}}


def test_transport_change_sends_nothing_and_model_change_reuses_identical_requests(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test-run-cache")
    run_dir = tmp_path / "run"
    with EchoServer() as server:
        run_pipeline(parse_config(_textbooks_config(server)), run_dir)
        sent = len(server.hits)
        assert sent >= 3
        assert (run_dir / "_cache").is_dir() and not list((run_dir / "textbooks").rglob("*.sqlite"))
        first = Dataset(run_dir / "textbooks").num_rows + Dataset(run_dir / "textbooks" / "rejected").num_rows

        # Transport and policy fields: the stage is not re-run and nothing is sent.
        for change in ({"concurrency": 7}, {"rpm": 600.0}, {"timeout_s": 9.0}, {"max_retries": 4},
                       {"budget_tokens": 10**9}, {"batch_size": 3}):
            record = run_pipeline(parse_config(_textbooks_config(server, **change)), run_dir)
            assert len(server.hits) == sent, change
            assert record["stages"]["textbooks"]["config_hash"] == Run(
                run_dir, parse_config(_textbooks_config(server))).hashes["textbooks"]

        # Another model re-runs the stage and sends its requests ...
        run_pipeline(parse_config(_textbooks_config(server, model="m2")), run_dir)
        assert len(server.hits) == 2 * sent
        # ... and going back re-runs it again, every identical request answered by the cache.
        run_pipeline(parse_config(_textbooks_config(server)), run_dir)
        assert len(server.hits) == 2 * sent
        again = Dataset(run_dir / "textbooks").num_rows + Dataset(run_dir / "textbooks" / "rejected").num_rows
        assert again == first


def test_teacher_cache_path_from_config_or_env(tmp_path, monkeypatch):
    cfg = parse_config({"run": {"teacher_cache": str(tmp_path / "shared")}})
    assert Run(tmp_path / "r", cfg).teacher_cache_dir == tmp_path / "shared"
    monkeypatch.setenv("TEXTBOOKLM_TEACHER_CACHE", str(tmp_path / "env"))
    assert Run(tmp_path / "r", parse_config({})).teacher_cache_dir == tmp_path / "env"
    monkeypatch.delenv("TEXTBOOKLM_TEACHER_CACHE")
    assert Run(tmp_path / "r", parse_config({})).teacher_cache_dir == tmp_path / "r" / "_cache"


BAD_REFERENCES = [
    ({"corpus": {"sources": [{"kind": "folder", "path": "/no/such/folder"}]}},
     "corpus.sources.0.path: no such folder: /no/such/folder"),
    ({"textbooks": {"teacher": "gpt9"}}, "textbooks.teacher: no teacher named 'gpt9'"),
    ({"decontam": {"benchmarks": [{"task": "mbpp", "path": "/no/mbpp.jsonl"}]}},
     "decontam.benchmarks.0.path: no such file: /no/mbpp.jsonl"),
    ({"textbooks": {"teacher": "t", "seeds": {"topics_file": "/no/topics.txt"}}},
     "textbooks.seeds.topics_file: no such file: /no/topics.txt"),
    ({"corpus": {}, "judge": {"judges": ["llm"], "label_from": "llm", "teacher": "t",
                              "llm": {"prompt": "/no/prompt.txt", "scale": "0-5"}}},
     "judge.llm.prompt: no such file: /no/prompt.txt"),
    ({"corpus": {}, "tokenizer": {}, "pack": {"sources": [{"dataset": "nosuch"}]}},
     "pack.sources.0.dataset: dataset 'nosuch': not a stage"),
    ({"corpus": {}, "tokenizer": {}, "pack": {"sources": [{"dataset": "textbooks"}]}},
     "pack.sources.0.dataset: dataset 'textbooks' is a stage this config does not run"),
    ({"eval": {"models": ["finetune"]}}, "eval.models.0: dataset 'finetune' is a stage this config does not run"),
    ({"judge": {}}, "stage 'judge' needs corpus configured before it"),
]


@pytest.mark.parametrize(("body", "expected"), BAD_REFERENCES)
def test_config_check_catches_bad_references(tmp_path, body, expected):
    raw = {"teachers": {"t": {"backend": "local", "model": "smollm2"}}, **body}
    path = tmp_path / "bad.toml"
    path.write_text(_toml(raw))
    result = CliRunner().invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 2, result.output
    assert expected in result.output.replace("\n", " ") and "Traceback" not in result.output
    assert check_run(parse_config(raw), str(path))  # run_pipeline refuses the same config before starting


def test_strict_types_refuse_bool_for_int(tmp_path):
    path = tmp_path / "bool.toml"
    path.write_text("[corpus]\nfiles_per_shard = true\n")
    result = CliRunner().invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 2 and "corpus.files_per_shard" in result.output


def test_run_refuses_a_bad_config_before_anything_runs(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(_toml({"corpus": {"sources": [{"kind": "jsonl", "path": str(tmp_path / "none.jsonl")}]}}))
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "none.jsonl" in result.output
    assert not (tmp_path / "run" / "corpus").exists()


def _toml(raw: dict, prefix: str = "") -> str:
    """Enough TOML for these configs (tables, arrays of inline tables, scalars)."""
    def value(v):
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + "}"
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, bool):
            return "true" if v else "false"
        return json.dumps(v)

    lines, tables = [], []
    for k, v in raw.items():
        if isinstance(v, dict) and all(isinstance(x, dict) for x in v.values()) and v:
            tables.append((k, v, True))
        elif isinstance(v, dict):
            tables.append((k, v, False))
        else:
            lines.append(f"{k} = {value(v)}")
    out = "\n".join(lines) + "\n"
    for k, v, nested in tables:
        name = f"{prefix}{k}"
        if nested:
            for sub, body in v.items():
                out += f"\n[{name}.{sub}]\n" + "".join(f"{a} = {value(b)}\n" for a, b in body.items())
        else:
            out += f"\n[{name}]\n" + "".join(f"{a} = {value(b)}\n" for a, b in v.items())
    return out


def test_cache_stats_and_prune(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test-run-cache")
    run_dir = tmp_path / "run"
    with EchoServer() as server:
        run_pipeline(parse_config(_textbooks_config(server)), run_dir)
        sent = len(server.hits)
    runner = CliRunner()
    stats = runner.invoke(app, ["cache", "stats", str(run_dir)])
    assert stats.exit_code == 0 and "m1" in stats.output and "textbooks" in stats.output, stats.output
    assert runner.invoke(app, ["cache", "prune", str(run_dir)]).exit_code == 2  # needs a filter
    dry = runner.invoke(app, ["cache", "prune", str(run_dir), "--model", "m1", "--dry-run"])
    assert f"would remove {sent}" in dry.output
    gone = runner.invoke(app, ["cache", "prune", str(run_dir), "--model", "m1"])
    assert f"removed {sent}" in gone.output
    from textbooklm.teacher.cache_admin import cache_stats

    assert cache_stats(run_dir / "_cache")["models"] == []


def test_no_silent_fallback_to_uncleaned_data_while_decontam_is_pending(tmp_path):
    cfg = parse_config({"corpus": {"sources": [{"kind": "stdlib"}]}, "decontam": {}, "tokenizer": {}})
    run = Run(tmp_path, cfg)
    with pytest.raises(FileNotFoundError, match="decontam is pending, so there is no cleaned copy yet"):
        run.dataset("corpus")
    assert run.dataset("corpus", before="decontam").path == tmp_path / "corpus"  # decontam itself reads the raw one
    assert run.dataset("corpus", unfiltered=True).path == tmp_path / "corpus"  # asked for on purpose
