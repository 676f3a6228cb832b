"""The report of a small real run of every stage (tests/report/small_run.py): the story, warnings the
run really has (a degenerate LLM judge, a textbook repeated past 4 epochs) and those planted into a
copy of it, examples from every area, plots, and the page as headless Chromium renders it."""

from __future__ import annotations

import html
import json
import re
import shutil
import sys
from pathlib import Path

import pytest

from textbooklm.report.browser import chromium_path, render
from textbooklm.report.build import build_page, build_report
from textbooklm.reporting.plots import bar_chart
from textbooklm.run import Run
from textbooklm.store import Dataset

sys.path.insert(0, str(Path(__file__).parent))
from small_run import build  # noqa: E402

pytestmark = pytest.mark.slow
HOPS = ["corpus", "filter", "textbooks", "exercises", "decontam", "pack", "pretrain", "finetune", "eval"]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("fullrun"))


def part(page: str, sid: str) -> str:
    """The HTML of one section."""
    start = page.index(f'<section id="{sid}">')
    return page[start:page.index("</section>", start)]


def warnings_box(page: str) -> str:
    """The warnings box's HTML with entities decoded (its texts are escaped in the page)."""
    story = part(page, "story")
    return html.unescape(story[story.index("id='warnings'"):])


def test_story_hops_and_real_warnings_linked_to_sections(full_run):
    page = (full_run / "report.html").read_text()
    story = part(page, "story")
    for name in HOPS:
        assert f'href="#stage-{name}"' in story, name
    box = warnings_box(page)
    assert "degenerate LLM judge" in box and "the judges do not agree" in box
    assert re.search(r"heavy repetition in the pack: textbooks is repeated [\d.]+ times", box)
    for target in re.findall(r'href="#([\w-]+)"', box):
        assert f'<section id="{target}">' in page
    epochs = next(s for s in json.loads((full_run / "pack" / "index.json").read_text())["sources"]
                  if s["dataset"] == "textbooks")["packed"]["epochs"]
    assert epochs > 4 and f"repeated {epochs:.1f} times" in box  # the number is the pack's own


def test_examples_from_every_area(full_run):
    page = (full_run / "report.html").read_text()
    judge = part(page, "stage-judge")
    assert "<details>" in judge and "prompt" in judge and "grade probabilities" in judge
    filt = part(page, "stage-filter")
    assert "classifier score" in filt and "heuristic" in filt
    kept_tags, dropped_tags = filt.count("tag kept"), filt.count("tag dropped")
    assert kept_tags and dropped_tags  # the classifier's cut keeps some files and drops others
    book = next(Dataset(full_run / "textbooks").iter_records())
    seed = json.loads(book["seed"])
    assert html.escape(seed["topic"], quote=True) in part(page, "stage-textbooks")
    ex = part(page, "stage-exercises")
    assert re.search(r"mined from \w+\.py:\w+", ex) and "def check(candidate)" in ex and "mutation score" in ex
    decontam = part(page, "stage-decontam")
    pairs = [p for p in json.loads((full_run / "decontam" / "pairs.json").read_text()) if p["decision"] == "remove"]
    assert pairs and "class='pair'" in decontam
    status = json.loads((full_run / "decontam" / "_stage.json").read_text())
    if status["stats"]["kept"] != status["summary"]["kept"]:  # held-out exercises sit in the cleaned copies
        assert "held-out exercises, kept out of training" in decontam
    assert html.escape(pairs[0]["problem_text"].strip().splitlines()[0], quote=True) in decontam
    evals = part(page, "stage-eval")
    assert "parameters" in evals and "this run: finetune" in evals and "50.6" in evals


def test_plots_where_people_look(full_run):
    page = (full_run / "report.html").read_text()
    images = {sid: part(page, sid).count("data:image/png;base64,") for sid in
              ("stage-judge", "stage-classify", "stage-filter", "stage-pack", "stage-pretrain", "stage-eval")}
    assert images["stage-judge"] == 2  # histogram + LLM-vs-heuristic scatter
    assert images["stage-classify"] >= 2  # a confusion heatmap per head
    assert all(n >= 1 for n in images.values()), images


def test_planted_conditions_reach_the_warnings_box(tmp_path, full_run):
    run = tmp_path / "run"
    shutil.copytree(full_run, run, ignore=shutil.ignore_patterns("train", "_cache", "_work"))
    results = json.loads((run / "eval" / "results.json").read_text())
    results["measurements"]["finetune"]["humaneval pass@1"]["empty_share"] = 0.9
    results["heldout_overlap"]["finetune"]["humaneval"]["overlapping"] = 2
    (run / "eval" / "results.json").write_text(json.dumps(results))
    metrics = json.loads((run / "classify" / "metrics.json").read_text())
    for head in metrics["heads"].values():
        head["test"]["f1"] = 0.3
    (run / "classify" / "metrics.json").write_text(json.dumps(metrics))
    stage = json.loads((run / "textbooks" / "_stage.json").read_text())
    stage["summary"]["kept"] = 0
    (run / "textbooks" / "_stage.json").write_text(json.dumps(stage))
    box = warnings_box(build_report(run).read_text())
    assert "mostly empty samples: 90% of finetune's humaneval" in box
    assert "evaluation overlaps training data: 2 of 3 humaneval problems" in box
    assert "the classifier is no better than its baselines" in box
    assert "textbooks: the teacher wrote 4 and none was kept" in box
    assert "degenerate LLM judge" in box  # the real ones stay


@pytest.mark.skipif(chromium_path() is None, reason="needs Chromium (make browser installs it)")
def test_renders_in_headless_chromium(full_run):
    shot = full_run / "report.png"
    dom = render(full_run / "report.html", shot, height=2400)
    attrs = dict(re.findall(r'data-([a-z-]+)="(\d+)"', dom))
    assert int(attrs["images"]) >= 12 and attrs["broken-images"] == "0"
    assert attrs["network-loads"] == "0" and attrs["external-refs"] == "0" and attrs["overflow-px"] == "0"
    _, sections = build_page(Run(full_run))
    for sid, _ in sections:
        assert f'<section id="{sid}">' in dom
    assert "degenerate LLM judge" in dom
    assert shot.stat().st_size > 50_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(chromium_path() is None, reason="needs Chromium (make browser installs it)")
def test_the_dom_checks_can_fail(tmp_path, full_run):
    page = (full_run / "report.html").read_text()
    png = tmp_path / "local.png"
    png.write_bytes(bar_chart(["a"], [1.0], "a local file", "y"))
    bad = tmp_path / "bad.html"
    bad.write_text(page.replace("data:image/png;base64,", "data:image/png;base64,AAAA", 1)
                   .replace("<main>", f"<main><div style='width:3000px'>wide</div><img src='{png.name}'>", 1))
    attrs = dict(re.findall(r'data-([a-z-]+)="(\d+)"', render(bad)))
    assert attrs["broken-images"] != "0" and int(attrs["overflow-px"]) > 1000 and attrs["external-refs"] == "1"
