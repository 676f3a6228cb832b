"""``config check`` of the corpus section: source paths, as the readers take them."""

from __future__ import annotations

from corpus_fixtures import make_jsonl, make_parquet

from textbooklm.config import parse_config
from textbooklm.run_check import check_run


def problems(sources: list[dict]) -> list[str]:
    return check_run(parse_config({"corpus": {"sources": sources}}), "c.toml")


def test_folders_of_jsonl_and_parquet_files_pass_like_single_files(tmp_path):
    (tmp_path / "jsonl").mkdir()
    (tmp_path / "parquet").mkdir()
    make_jsonl(tmp_path / "jsonl" / "a.jsonl")
    make_parquet(tmp_path / "parquet" / "a.parquet")
    assert problems([{"kind": "jsonl", "path": str(tmp_path / "jsonl")},
                     {"kind": "parquet", "path": str(tmp_path / "parquet")},
                     {"kind": "archive", "path": str(tmp_path)},
                     {"kind": "jsonl", "path": str(tmp_path / "jsonl" / "a.jsonl")}]) == []


def test_missing_source_paths_are_still_named(tmp_path):
    assert problems([{"kind": "jsonl", "path": str(tmp_path / "gone")},
                     {"kind": "folder", "path": str(make_jsonl(tmp_path / "a.jsonl"))}]) == [
        f"c.toml: corpus.sources.0.path: no such file: {tmp_path / 'gone'}",
        f"c.toml: corpus.sources.1.path: not a folder: {tmp_path / 'a.jsonl'}",
    ]
