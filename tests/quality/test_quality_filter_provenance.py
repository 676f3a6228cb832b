"""The filter decides labelled records on out-of-fold scores and says why each record is where it is.

Real runs: corpus -> judge -> classify -> filter through the pipeline on the fixture corpus (30 clearly
educational files, 30 clearly not), hashing embedder, real scikit-learn and Parquet.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from quality_fixtures import base_config, make_corpus_folder

from textbooklm.config import parse_config
from textbooklm.pipeline import run_pipeline
from textbooklm.record import provenance, with_provenance
from textbooklm.store import Dataset

QUALITY = {
    "judge": {"judges": ["heuristic"], "heuristic": {"threshold": 0.5}},
    "classify": {"embedder": "hashing-256", "n_estimators": 30, "folds": 5},
    "filter": {},
}


def plant_contradicting_labels(judge_dir: Path, flip_to_0: set[str], flip_to_1: set[str]) -> None:
    """Rewrite the judge's labels of the named files, as a noisy judge would have labelled them."""
    for shard in sorted(judge_dir.glob("part-*.parquet")):
        table = pq.read_table(shard)
        rows = []
        for r in table.to_pylist():
            if r["path"] in flip_to_0 | flip_to_1:
                r["label"] = int(r["path"] in flip_to_1)
                r = with_provenance(r, "judge", label=r["label"])
            rows.append(r)
        pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), shard)


def records(folder: Path) -> dict[str, dict]:
    """Path -> record of the filter's kept and rejected records, with which side it is on."""
    out = {r["path"]: {**r, "side": "kept"} for r in Dataset(folder).iter_records()}
    out.update({r["path"]: {**r, "side": "dropped"} for r in Dataset(folder / "rejected").iter_records()})
    return out


def test_planted_labels_are_not_echoed_by_the_filter(tmp_path):
    """Four educational files labelled 0 and two non-educational files labelled 1: the model that scores
    each of them never saw that label, so the filter keeps the four and drops the two (their features
    decide), and counts those six as decisions that differ from the label. The saved model, which trained
    on the wrong labels, would have handed most of them back (its in-sample scores show it)."""
    folder = make_corpus_folder(tmp_path / "code")
    cfg = parse_config(base_config(folder, **QUALITY))
    run = tmp_path / "run"
    run_pipeline(cfg, run, only=["corpus", "judge"])
    to_0 = {f"good_{i:03d}.py" for i in range(4)}
    to_1 = {f"bad_{i:03d}.py" for i in (0, 1)}
    plant_contradicting_labels(run / "judge", to_0, to_1)
    run_pipeline(cfg, run)

    got = records(run / "filter")
    assert len(got) == 60
    for path in to_0 | to_1:
        prov = provenance(got[path])
        assert prov["classify"]["split"] == "out-of-fold" and prov["classify"]["label"] == int(path in to_1)
        assert prov["judge"]["label"] == int(path in to_1)  # the judge's block travelled into the filter
        assert got[path]["side"] == ("kept" if path in to_0 else "dropped"), (path, prov)
    in_sample = [provenance(got[p])["classify"]["in_sample_score"] for p in to_0]
    assert sum(in_sample) / len(in_sample) < 0.5  # what the filter decided on before: the echo of the label
    kept = {p for p, r in got.items() if r["side"] == "kept"}
    assert kept == {f"good_{i:03d}.py" for i in range(30)}

    summary = Dataset(run / "filter").manifest["summary"]
    assert summary["labelled"]["decisions_differing_from_label"] == 6
    assert (summary["labelled"]["kept_label_0"], summary["labelled"]["dropped_label_1"]) == (4, 2)
    assert summary["labels_cover_every_record"] is True
    assert "can only lose information here: it changed 6 of 60 decisions" in summary["line"]
    classify = {r["path"]: r for r in Dataset(run / "classify").iter_records()}
    assert {r["split"] for r in classify.values()} == {"out-of-fold"}
    assert sorted({r["fold"] for r in classify.values()}) == [0, 1, 2, 3, 4]
    assert all(got[p]["score"] == classify[p]["score"] for p in to_1)  # rejected rows keep the oof score


def test_baselines_next_to_the_out_of_fold_metrics(tmp_path):
    folder = make_corpus_folder(tmp_path / "code", n_good=20, n_bad=40)
    run = tmp_path / "run"
    run_pipeline(parse_config(base_config(folder, **QUALITY)), run)
    metrics = json.loads((run / "classify" / "metrics.json").read_text())
    p = 20 / 60
    pos, neg = metrics["baselines"]["predict-positive"], metrics["baselines"]["predict-negative"]
    assert (pos["n"], pos["recall"], pos["precision"]) == (60, 1.0, round(p, 4))
    assert pos["f1"] == round(2 * p / (1 + p), 4) and pos["accuracy"] == round(p, 4)
    assert (neg["f1"], neg["accuracy"]) == (0.0, round(1 - p, 4))
    assert metrics["heads"]["random_forest"]["test"]["n"] == 60  # every labelled record, scored out of fold
    assert metrics["in_sample_echo"] == {"n": 60, "decision_equals_label": 60}
    line = Dataset(run / "classify").manifest["summary"]["line"]
    assert "5-fold out-of-fold" in line and "predict-positive F1 0.50" in line and "predict-negative F1 0.00" in line
    summary = Dataset(run / "filter").manifest["summary"]
    assert summary["baseline_f1"] == {"predict-positive": pos["f1"], "predict-negative": 0.0}
    assert summary["out_of_fold_f1"] == metrics["heads"]["random_forest"]["test"]["f1"]
    assert "vs predict-positive 0.50, predict-negative 0.00" in summary["line"]

    # classify re-runs in the same folder, in the same process: the filter decides on the new scores
    raw = base_config(folder, **{**QUALITY, "classify": {**QUALITY["classify"], "folds": 3, "n_estimators": 7}})
    run_pipeline(parse_config(raw), run)
    oof = {r["id"]: r["score"] for r in Dataset(run / "classify").iter_records(["id", "score"])}
    got = records(run / "filter")
    assert all(provenance(r)["filter"]["score"] == round(oof[r["id"]], 6) for r in got.values())
    assert {provenance(r)["classify"]["folds"] for r in got.values()} == {3}


def test_a_judged_sample_labels_and_the_classifier_decides_the_rest(tmp_path):
    """phi-1's shape: the judge labels 40 of 60 files; the other 20 are embedded and scored by the model
    trained on all 40 labels. Every filter record, kept or rejected, says which of the two it was."""
    folder = make_corpus_folder(tmp_path / "code")
    raw = base_config(folder, **QUALITY)
    raw["judge"]["heuristic"]["sample"] = 40
    run = tmp_path / "run"
    run_pipeline(parse_config(raw), run)

    judge = Dataset(run / "judge").manifest["summary"]
    assert (judge["labelled"], judge["corpus_records"]) == (40, 60)
    assert (judge["counts"]["in"], judge["counts"]["kept"], judge["counts"]["dropped"]) == (40, 40, 0)
    assert "labelled 40 of 60 corpus records (67%); the classifier decides the other 20" in judge["line"]
    got = records(run / "filter")
    splits = {p: provenance(r)["classify"]["split"] for p, r in got.items()}
    assert sorted(splits.values()).count("out-of-fold") == 40 and sorted(splits.values()).count("unlabelled") == 20
    sides = set()
    for r in got.values():
        prov = provenance(r)
        sides.add((prov["classify"]["split"], r["side"]))
        assert "corpus" in prov and prov["filter"]["threshold"] == 0.5
        if prov["classify"]["split"] == "unlabelled":
            assert "judge" not in prov and "trained on all 40 labelled records" in prov["classify"]["score_from"]
        else:
            assert prov["judge"]["label_from"] == "heuristic" and "features" in prov["judge"]["heuristic"]
            assert prov["classify"]["label"] == prov["judge"]["label"] and prov["classify"]["folds"] == 5
            assert "never on this one" in prov["classify"]["score_from"]
    assert sides == {("out-of-fold", "kept"), ("out-of-fold", "dropped"), ("unlabelled", "kept"),
                     ("unlabelled", "dropped")}
    summary = Dataset(run / "filter").manifest["summary"]
    assert summary["labels_cover_every_record"] is False and "can only lose" not in summary["line"]
    assert summary["unlabelled"]["n"] == 20 and summary["embedded_here"] == 20
    assert summary["labelled"]["n"] == 40
    assert summary["counts"]["in"] == 60 == summary["counts"]["kept"] + summary["counts"]["dropped"]
    assert summary["counts"]["kept"] == summary["labelled"]["kept"] + summary["unlabelled"]["kept"]
