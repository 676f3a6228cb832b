from pathlib import Path

import pytest
from corpus_fixtures import make_jsonl, make_parquet, make_targz, make_wheel

from textbooklm.corpus.config import SourceConfig
from textbooklm.corpus.readers import plan_units, read_unit, stdlib_root


def read_all(source: SourceConfig, max_bytes: int = 10**6):
    return [item for unit in plan_units(source) for item in read_unit(unit, source, max_bytes)]


def test_stdlib_units_are_the_interpreter_library():
    units = plan_units(SourceConfig(kind="stdlib"))
    assert len(units) > 1000
    assert all(u["file"].endswith(".py") and "site-packages" not in u["file"] for u in units)
    assert Path(units[0]["root"]) == stdlib_root()


def test_folder_glob(tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.py").write_text("y = 2\n")
    (tmp_path / "c.txt").write_text("no\n")
    items = read_all(SourceConfig(kind="folder", path=str(tmp_path)))
    assert sorted(i.path for i in items) == ["a.py", "sub/b.py"]
    only_sub = read_all(SourceConfig(kind="folder", path=str(tmp_path), glob="sub/*.py"))
    assert [i.path for i in only_sub] == ["sub/b.py"]


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        plan_units(SourceConfig(kind="folder", path=str(tmp_path / "nope")))


def test_jsonl_good_and_bad_records(tmp_path):
    items = read_all(SourceConfig(kind="jsonl", path=str(make_jsonl(tmp_path / "d.jsonl")), path_column="name"))
    good = [i for i in items if not i.error]
    bad = [i for i in items if i.error]
    assert [i.path for i in good] == ["rec0", "rec1", "rec2"]
    assert [i.error for i in bad] == ["malformed-record"] * 4
    assert "bad JSON" in bad[0].detail and bad[0].path.endswith("d.jsonl:4")
    assert "no 'text' field" in bad[1].detail
    assert "int, not a string" in bad[2].detail
    assert "not an object" in bad[3].detail


def test_parquet_row_groups(tmp_path):
    src = SourceConfig(kind="parquet", path=str(make_parquet(tmp_path / "d.parquet")))
    assert len(plan_units(src)) == 2
    items = read_all(src)
    assert len(items) == 4 and not any(i.error for i in items)
    assert items[3].path.endswith("d.parquet:3")
    wrong = read_all(SourceConfig(kind="parquet", path=str(tmp_path / "d.parquet"), text_column="code"))
    assert wrong[0].error == "malformed-record" and "no column 'code'" in wrong[0].detail


def test_corrupt_parquet_is_rejected_not_raised(tmp_path):
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 garbage")
    items = read_all(SourceConfig(kind="parquet", path=str(tmp_path / "bad.parquet")))
    assert [i.error for i in items] == ["unreadable"]


def test_archives_read_without_unpacking(tmp_path):
    whl = read_all(SourceConfig(kind="archive", path=str(make_wheel(tmp_path / "p-1.0-py3-none-any.whl"))))
    assert sorted(i.path.split("!/")[1] for i in whl) == ["pkg/__init__.py", "pkg/core.py"]
    tgz = read_all(SourceConfig(kind="archive", path=str(make_targz(tmp_path / "s.tar.gz"))))
    assert sorted(i.path.split("!/")[1] for i in tgz) == ["src/a.py", "src/b.py"]
    assert not (tmp_path / "pkg").exists() and not (tmp_path / "src").exists()


def test_unreadable_archive(tmp_path):
    (tmp_path / "broken.whl").write_bytes(b"PK\x03\x04 this is not a zip")
    (tmp_path / "broken.tar.gz").write_bytes(b"\x1f\x8b not gzip")
    for name in ("broken.whl", "broken.tar.gz"):
        items = read_all(SourceConfig(kind="archive", path=str(tmp_path / name)))
        assert [i.error for i in items] == ["unreadable-archive"], name


def test_too_large_is_not_read(tmp_path):
    (tmp_path / "big.py").write_text("x = 1\n" * 100)
    [item] = read_all(SourceConfig(kind="folder", path=str(tmp_path)), max_bytes=50)
    assert item.error == "too-large" and item.data is None and item.n_bytes == 600
