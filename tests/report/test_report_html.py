"""The report of a real corpus-only run (fast): the first screen, the corpus section with a dropped
file per reason, the same counts as `textbooklm status`, escaping, and a partial run said to be partial."""

import html
import json
import shutil

import pytest

from textbooklm.config import parse_config
from textbooklm.pipeline import run_pipeline, run_status
from textbooklm.report.build import RUN_WIDE, STORY_ID, build_report


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("reportrun")
    src = root / "src"
    src.mkdir()
    for i in range(8):
        (src / f"m{i}.py").write_text("".join(f"def fn_{i}_{j}(a):\n    return a * {j} + {i}\n" for j in range(5)))
    (src / "blob.py").write_bytes(b"\x00\x01binary")
    (src / "copy.py").write_text((src / "m1.py").read_text())
    cfg = parse_config({"run": {"workers": 1}, "corpus": {"sources": [{"kind": "folder", "path": str(src)}]},
                        "report": {}})
    run_pipeline(cfg, root / "run")
    return root / "run"


def test_first_screen_sections_and_examples(corpus_run):
    page = (corpus_run / "report.html").read_text()
    for sid in [STORY_ID, "stage-corpus", *(sid for sid, _ in RUN_WIDE)]:
        assert f'id="{sid}"' in page
    story = page[page.index(f'id="{STORY_ID}"'):page.index('id="stage-corpus"')]
    assert "10 files read, 8 kept" in story and 'href="#stage-corpus"' in story
    assert "No warning" in story  # nothing planted in this run
    corpus = page[page.index('id="stage-corpus"'):page.index('id="stages"')]
    assert "binary" in corpus and "exact-duplicate" in corpus and "copy.py" in corpus  # one example per reason
    assert corpus.count("data:image/png;base64,") == 1  # the sorted drop reasons
    # The stage's summary line appears once on the page, not three times.
    line = json.loads((corpus_run / "run.json").read_text())["stages"]["corpus"]["line"]
    assert "->" in line and page.count(html.escape(line, quote=True)) == 1  # escaped as every text on the page


def test_counts_are_those_of_status(corpus_run):
    page = (corpus_run / "report.html").read_text()
    table = page[page.index('id="stages"'):page.index('id="teacher"')]
    for row in run_status(corpus_run):
        if row["kept"] is not None:
            assert f"<td>{row['stage']}</td><td>" in table
            assert f'<td class="num">{row["in"]:,}</td><td class="num">{row["kept"]:,}</td>' in table


def test_report_escapes_text(tmp_path, corpus_run):
    run = tmp_path / "run"
    shutil.copytree(corpus_run, run)
    stage = json.loads((run / "corpus" / "_stage.json").read_text())
    stage["line"] = "<script>alert(1)</script>"
    (run / "corpus" / "_stage.json").write_text(json.dumps(stage))
    page = build_report(run).read_text()
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page


def test_a_partial_stage_is_said_to_be_partial(tmp_path, corpus_run):
    run = tmp_path / "run"
    shutil.copytree(corpus_run, run)
    (run / "corpus" / "_stage.json").unlink()  # as if corpus were being re-run
    page = build_report(run).read_text()
    assert "state: partial" in page and "corpus is partial" in page  # in its section and in the warnings


def test_judge_warnings_name_each_degenerate_judge():
    """The judge checks on the demo's failure: 24 LLM scores at 0.91-1.0 (spread, but one label)."""
    from textbooklm.quality.report_section import judge_warnings

    heuristic = [i / 23 for i in range(24)]
    llm = [0.91 + 0.09 * i / 23 for i in range(24)]
    agreement = {"n": 24, "spearman": 0.05, "kappa": 0.0}
    found = judge_warnings({"heuristic": heuristic, "LLM": llm}, agreement, {"heuristic": 0.5, "llm": 0.6})
    assert any("degenerate LLM judge: it calls all 24 files educational" in w for w in found)
    assert any("the judges do not agree: Spearman 0.05" in w for w in found)
    assert not any("heuristic judge" in w for w in found)
    assert judge_warnings({"heuristic": heuristic, "LLM": heuristic}, {"n": 24, "spearman": 0.9, "kappa": 0.8},
                          {"heuristic": 0.5, "llm": 0.5}) == []


def test_the_report_stage_ledger_counts_sections_and_drops_a_broken_one(tmp_path, corpus_run):
    """Its summary counts the page's sections; one whose builder fails is in rejected/ with the error."""
    from textbooklm.pipeline import context_for
    from textbooklm.report.stage import run as report_stage
    from textbooklm.run import Run
    from textbooklm.stage_stats import stage_stats
    from textbooklm.store import Dataset

    done = Dataset(corpus_run / "report")
    counts = done.manifest["summary"]["counts"]
    assert counts["in"] == counts["kept"] == done.num_rows == 2 + len(RUN_WIDE) and counts["dropped"] == 0
    assert done.manifest["summary"]["line"].startswith(f"report: {counts['in']} sections -> {counts['in']} kept, "
                                                       "0 dropped; ")

    run = tmp_path / "run"
    shutil.copytree(corpus_run, run)
    (run / "ablation").mkdir()
    (run / "ablation" / "summary.json").write_text(json.dumps({"table": [{}]}))  # an ablation row without fields
    owner = Run(run)
    ds = report_stage(owner.cfg.report, {}, run / "report", context_for(owner, "report"))
    summary = ds.manifest["summary"]
    assert summary["counts"]["dropped_by_reason"] == {"section-failed": 1}
    rows = Dataset(run / "report" / "rejected").to_table().to_pylist()
    assert [(r["section"], r["reason"]) for r in rows] == [("ablation", "section-failed")]
    assert rows[0]["detail"].startswith("KeyError")
    assert "could not build this section: KeyError" in (run / "report.html").read_text()
    assert stage_stats("report", run / "report", summary, 1.0)["dropped"] == 1
