"""classify -> filter with the static (model2vec) embedder, the demo's default, through the pipeline."""

from __future__ import annotations

import json

import pytest
from quality_fixtures import base_config, make_corpus_folder

from textbooklm.config import parse_config
from textbooklm.pipeline import run_pipeline
from textbooklm.store import Dataset


@pytest.mark.slow  # the first use on a machine distils the embedder from MiniLM (1-3 minutes); then ~1 s
def test_static_embedder_classifies_and_filters_unjudged_records(tmp_path):
    """Half the corpus is judged; the filter embeds the other half itself with the saved embedder."""
    folder = make_corpus_folder(tmp_path / "code", n_good=40, n_bad=40)
    raw = base_config(folder, judge={"judges": ["heuristic"], "heuristic": {"threshold": 0.5, "sample": 40}},
                      classify={"embedder": "static", "n_estimators": 30, "test_fraction": 0.3, "max_chars": 300},
                      filter={})
    raw["run"]["workers"] = 2
    run = tmp_path / "run"
    run_pipeline(parse_config(raw), run)

    metrics = json.loads((run / "classify" / "metrics.json").read_text())
    assert metrics["embedder"] == "static" and metrics["dim"] == 256
    assert metrics["heads"]["random_forest"]["test"]["roc_auc"] >= 0.9
    summary = Dataset(run / "filter").manifest["summary"]
    assert summary["embedder"] == "static" and summary["embedded_here"] == 40
    kept = {r["path"] for r in Dataset(run / "filter").iter_records(["path"])}
    good = {f"good_{i:03d}.py" for i in range(40)}
    assert len(kept & good) >= 36 and len(kept - good) <= 4
