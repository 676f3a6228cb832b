"""Adding a stage is one function and one registry entry: a toy stage through run, status, CLI, report.

Also the house rules the registry exists for: no import cycles between modules, and no stage area
importing another stage area (shared pieces sit below the stages).
"""

from __future__ import annotations

import ast
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field
from typer.testing import CliRunner

from textbooklm import registry
from textbooklm.cli import app
from textbooklm.config import parse_config
from textbooklm.config_base import StrictModel
from textbooklm.pipeline import run_pipeline, run_status
from textbooklm.registry import StageSpec
from textbooklm.reporting.section import Section
from textbooklm.stage_context import StageContext
from textbooklm.store import Dataset, shard_name, write_dataset

PACKAGE = Path(__file__).parents[1] / "textbooklm"


class ToyConfig(StrictModel):
    """Counts the lines of every corpus record, times a factor."""

    factor: int = Field(1, ge=1, description="Multiply each line count by this.")
    label: str = Field("toy", description="Label written into every row.")
    min_lines: int = Field(0, ge=0, description="Drop records with fewer (multiplied) lines than this.")


def toy_run(cfg: ToyConfig, inputs: dict[str, Dataset], out: Path, ctx: StageContext) -> Dataset:
    ledger = ctx.ledger("corpus records")  # its verdicts give rejected/, the summary's counts and line
    part = ledger.shard(shard_name(0))
    rows = []
    for r in inputs["corpus"].iter_records(columns=["id", "text"]):
        lines = cfg.factor * r["text"].count("\n")
        if lines < cfg.min_lines:
            part.drop({"id": r["id"]}, "too-few-lines", f"{lines} < {cfg.min_lines}")
        else:
            part.keep()
            rows.append({"id": r["id"], "lines": lines, "label": cfg.label})
    part.close()
    summary = ledger.finish(tail=f"factor {cfg.factor}, seed {ctx.seed}")
    return write_dataset(out, rows, stage="toy", config_hash=ctx.config_hash, summary=summary)


def toy_report(view: Any) -> Section:
    """The toy stage's report section: its body, a hop of the story and a warning, from its own area."""
    rows = view.output("toy").num_rows
    return Section(body=f"<p>toy rows: {rows}</p>", story=[f"toy counted the lines of {rows} records"],
                   warnings=["toy: every count was multiplied (factor > 1)"])


@pytest.fixture
def toy_stage():
    spec = registry.register(StageSpec("toy", ToyConfig, toy_run, inputs=("corpus",), report=toy_report,
                                       help="Count lines of corpus records (a test's stage)."))
    yield spec
    registry.unregister("toy")


def _corpus(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        (src / f"m{i}.py").write_text("".join(f"def f{i}_{j}(a):\n    return a + {j}\n" for j in range(4)))
    return src


def test_toy_stage_runs_through_pipeline_status_cli_and_report(tmp_path, toy_stage):
    src = _corpus(tmp_path)
    raw = {"run": {"workers": 1}, "corpus": {"sources": [{"kind": "folder", "path": str(src)}]},
           "toy": {"factor": 2, "min_lines": 10}, "report": {"screenshot": False}}
    cfg = parse_config(raw)
    assert cfg.toy.factor == 2  # the pipeline config grew a [toy] section
    run_dir = tmp_path / "run"
    record = run_pipeline(cfg, run_dir)
    assert list(record["stages"]) == ["corpus", "toy", "report"]  # toy before the report, after its input
    rows = Dataset(run_dir / "toy").to_table().to_pylist()
    assert len(rows) == 3 and {r["lines"] for r in rows} == {16}
    assert record["stages"]["toy"]["line"] == "toy: 3 corpus records -> 3 kept, 0 dropped; factor 2, seed 0"
    status = {r["stage"]: r for r in run_status(run_dir)}
    assert status["toy"]["state"] == "done" and status["toy"]["kept"] == 3
    assert status["toy"]["in_means"] == "corpus records" and status["toy"]["rejected"] == 0
    html = (run_dir / "report.html").read_text()
    toy = html[html.index('<section id="stage-toy">'):]
    assert "toy rows: 3" in toy and "Count lines of corpus records" in toy  # its section, headed by its help
    story = html[html.index('<section id="story">'):html.index('<section id="stage-corpus">')]
    assert 'href="#stage-toy">toy</a>: toy counted the lines of 3 records' in story
    assert "toy: every count was multiplied (factor &gt; 1)" in story  # its warning, linked to its section

    # The generated CLI command: options from the config model's fields, help from their docs.
    runner = CliRunner()
    help_text = runner.invoke(app, ["stage", "toy", "--help"]).output
    assert "--factor" in help_text and "Multiply each line count by this." in help_text
    config = tmp_path / "c.toml"
    config.write_text(f'[run]\nworkers = 1\n[corpus]\nsources = [{{kind = "folder", path = "{src}"}}]\n[toy]\n')
    result = runner.invoke(app, ["stage", "toy", "--out", str(run_dir), "--config", str(config), "--factor", "3",
                                 "--set", 'label="cli"', "--min-lines", "30"])
    assert result.exit_code == 0, result.output
    assert Dataset(run_dir / "toy").num_rows == 0  # 24 lines each, all dropped: the ledger says so everywhere
    rejected = Dataset(run_dir / "toy" / "rejected").to_table().to_pylist()
    assert [r["reason"] for r in rejected] == ["too-few-lines"] * 3 and rejected[0]["detail"] == "24 < 30"
    status = {r["stage"]: r for r in run_status(run_dir)}
    assert (status["toy"]["in"], status["toy"]["kept"], status["toy"]["rejected"]) == (3, 0, 3)
    result = runner.invoke(app, ["stage", "toy", "--out", str(run_dir), "--config", str(config), "--factor", "3",
                                 "--set", 'label="cli"'])
    assert result.exit_code == 0, result.output
    rows = Dataset(run_dir / "toy").to_table().to_pylist()
    assert {r["lines"] for r in rows} == {24} and {r["label"] for r in rows} == {"cli"}
    # A wrong type through --set is a clear error, not a traceback.
    bad = runner.invoke(app, ["stage", "toy", "--out", str(run_dir), "--set", "factor=true"])
    assert bad.exit_code == 2 and "factor" in bad.output and "Traceback" not in bad.output

    # And `config check` knows the stage: its order against its input is checked.
    alone = tmp_path / "alone.toml"
    alone.write_text("[toy]\nfactor = 2\n")
    check = runner.invoke(app, ["config", "check", str(alone)])
    assert check.exit_code == 2 and "stage 'toy' needs corpus configured before it" in check.output


def test_generated_commands_cover_every_registered_stage():
    runner = CliRunner()
    listing = runner.invoke(app, ["stage", "--help"]).output
    for name in registry.names():
        assert name in listing
    corpus_help = runner.invoke(app, ["stage", "corpus", "--help"]).output
    assert "--dedup-threshold" in corpus_help and "--filters-max-bytes" in corpus_help


def _imports() -> dict[str, set[str]]:
    """Module -> textbooklm modules it imports (anywhere in the file, lazy imports included)."""
    edges: dict[str, set[str]] = defaultdict(set)
    modules = set()
    for f in PACKAGE.rglob("*.py"):
        parts = f.relative_to(PACKAGE.parent).with_suffix("").parts
        mod = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules.add(mod)
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("textbooklm"):
                edges[mod].add(node.module)
                edges[mod].update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                edges[mod].update(a.name for a in node.names if a.name.startswith("textbooklm"))
    return {m: {t for t in ts if t in modules and t != m} for m, ts in edges.items()}


STAGE_AREAS = {spec.split(".")[1] for spec in registry.AREAS}


def test_no_stage_area_imports_another():
    bad = []
    for mod, targets in _imports().items():
        area = mod.split(".")[1] if mod.count(".") else None
        if area not in STAGE_AREAS:
            continue
        for t in targets:
            other = t.split(".")[1] if t.count(".") else None
            if other in STAGE_AREAS and other != area:
                bad.append(f"{mod} -> {t}")
    assert not bad, "stage areas must talk through Datasets; shared pieces go below the stages:\n" + "\n".join(bad)


def test_no_top_level_import_cycles():
    """Module-level imports form no cycle (lazy imports inside functions are how heavy modules stay lazy)."""
    edges: dict[str, set[str]] = defaultdict(set)
    modules = {}
    for f in PACKAGE.rglob("*.py"):
        parts = f.relative_to(PACKAGE.parent).with_suffix("").parts
        mod = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[mod] = f
    for mod, f in modules.items():
        for node in ast.parse(f.read_text()).body:  # top level only
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("textbooklm"):
                for target in (node.module, *(f"{node.module}.{a.name}" for a in node.names)):
                    if target in modules and target != mod:
                        edges[mod].add(target)
            elif isinstance(node, ast.Import):
                edges[mod].update(a.name for a in node.names if a.name in modules and a.name != mod)
    # A package's __init__ importing its own submodules is how packages work, not a cycle.
    for mod in list(edges):
        edges[mod] = {t for t in edges[mod] if not (t.startswith(mod + ".") or mod.startswith(t + "."))}
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, path: list[str]) -> bool:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycle.extend(path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt])
                return True
            if state.get(nxt) is None and visit(nxt, [*path, nxt]):
                return True
        state[node] = 2
        return False

    for mod in sorted(modules):
        if state.get(mod) is None and visit(mod, [mod]):
            break
    assert not cycle, " -> ".join(cycle)
    assert json.dumps(sorted(modules))  # the graph was built from the real package
