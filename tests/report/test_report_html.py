"""The report of a real (corpus-only) run renders in headless Chromium with every section and no
broken image; a screenshot is saved next to it."""

import re
import shutil

import pytest

from textbooklm.config import parse_config
from textbooklm.pipeline import run_pipeline
from textbooklm.report.browser import chromium_path, render
from textbooklm.report.build import SECTIONS, build_report


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


def test_report_has_every_section_and_real_numbers(corpus_run):
    page = (corpus_run / "report.html").read_text()
    for sid, _ in SECTIONS:
        assert f'id="{sid}"' in page
    assert "binary 1" in page and "exact-duplicate 1" in page  # drop reasons in the funnel
    assert page.count("data:image/png;base64,") >= 2  # funnel + timing plots embedded
    assert "50.6" in page  # the paper's HumanEval figure beside ours
    assert "was not part of this run" in page  # absent stages are said to be absent, not faked


def test_report_escapes_text(tmp_path, corpus_run):
    run = tmp_path / "run"
    shutil.copytree(corpus_run, run)
    (run / "corpus" / "_stage.json").write_text('{"line": "<script>alert(1)</script>", "summary": {}}')
    import json

    record = json.loads((run / "run.json").read_text())
    record["stages"]["corpus"]["line"] = "<script>alert(1)</script>"
    (run / "run.json").write_text(json.dumps(record))
    page = build_report(run).read_text()
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page


@pytest.mark.slow
@pytest.mark.skipif(chromium_path() is None, reason="needs Debian's chromium (make test installs it)")
def test_renders_in_headless_chromium(corpus_run):
    shot = corpus_run / "report.png"
    dom = render(corpus_run / "report.html", shot)
    images = int(re.search(r'data-images="(\d+)"', dom).group(1))
    broken = int(re.search(r'data-broken-images="(\d+)"', dom).group(1))
    assert images >= 2 and broken == 0
    for sid, _ in SECTIONS:
        assert f'id="{sid}"' in dom
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
@pytest.mark.skipif(chromium_path() is None, reason="needs Debian's chromium (make test installs it)")
def test_broken_image_is_detected(tmp_path, corpus_run):
    page = (corpus_run / "report.html").read_text()
    bad = tmp_path / "bad.html"
    bad.write_text(page.replace("data:image/png;base64,", "data:image/png;base64,AAAA", 1))
    dom = render(bad)
    assert int(re.search(r'data-broken-images="(\d+)"', dom).group(1)) == 1
