import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from textbooklm.store import Dataset, atomic_write_json, finish_dataset, shard_name, write_dataset, write_table


def records(n):
    return [{"id": str(i), "text": f"def f{i}(): pass", "n": i} for i in range(n)]


def test_write_and_read_back(tmp_path):
    ds = write_dataset(tmp_path / "d", records(25), stage="t", config_hash="abc", rows_per_shard=10,
                       parents=["p"], summary={"line": "t: 25"})
    assert [p.name for p in ds.shards()] == [shard_name(i) for i in range(3)]
    m = ds.manifest
    assert m["num_rows"] == 25 and m["config_hash"] == "abc" and m["parents"] == ["p"]
    assert m["shards"] == {shard_name(0): 10, shard_name(1): 10, shard_name(2): 5}
    assert m["schema"]["n"] == "int64"
    assert [r["n"] for r in ds.iter_records()] == list(range(25))
    assert ds.column("id") == [str(i) for i in range(25)]
    # Plain pyarrow reads the shards too (the documented glob: part-*.parquet).
    import pyarrow.dataset as pads

    assert pads.dataset(sorted(map(str, ds.path.glob("part-*.parquet"))), format="parquet").count_rows() == 25
    assert pq.read_table(ds.shards()[2]).num_rows == 5


def test_datasets_library_loads_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    datasets = pytest.importorskip("datasets")
    ds = write_dataset(tmp_path / "d", records(12), stage="t", rows_per_shard=5)
    loaded = datasets.load_dataset(
        "parquet", data_files=[str(p) for p in ds.shards()], split="train", cache_dir=str(tmp_path / "c")
    )
    assert loaded.num_rows == 12
    assert sorted(loaded["n"]) == list(range(12))


def test_unfinished_dataset_has_no_manifest(tmp_path):
    write_table(tmp_path / "d" / shard_name(0), pa.Table.from_pylist(records(3)))
    ds = Dataset(tmp_path / "d")
    assert not ds.is_finished
    assert ds.num_rows == 3
    with pytest.raises(FileNotFoundError, match="not a finished dataset"):
        _ = ds.manifest
    finish_dataset(ds.path, stage="t", config_hash="h")
    assert ds.is_finished and ds.manifest["num_rows"] == 3


def test_failed_write_leaves_no_partial_file(tmp_path):
    class Boom(Exception):
        pass

    bad = pa.Table.from_pylist(records(3))

    def explode(*a, **k):
        raise Boom

    target = tmp_path / "d" / shard_name(0)
    import textbooklm.store as store

    orig = store.pq.write_table
    store.pq.write_table = explode
    try:
        with pytest.raises(Boom):
            write_table(target, bad)
    finally:
        store.pq.write_table = orig
    assert list((tmp_path / "d").iterdir()) == []


def test_temp_files_are_never_listed_as_shards(tmp_path):
    d = tmp_path / "d"
    write_table(d / shard_name(0), pa.Table.from_pylist(records(2)))
    (d / f".{shard_name(1)}.abc.tmp").write_bytes(b"half a shard")
    assert [p.name for p in Dataset(d).shards()] == [shard_name(0)]


def test_atomic_json(tmp_path):
    atomic_write_json(tmp_path / "x.json", {"b": 1, "a": [1, 2]})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": [1, 2], "b": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_lone_surrogate_is_an_error_naming_the_record():
    from textbooklm.store import InvalidTextError, records_to_table

    rows = records(3)
    rows[2]["text"] = "def f():\n    return '\ud800'\n"
    with pytest.raises(InvalidTextError, match=r"record 2 \(id '2'\): column 'text': lone surrogate U\+D800 "
                       r"at character 21; Parquet stores only valid UTF-8"):
        records_to_table(rows)
    with pytest.raises(InvalidTextError, match="record 2"):
        records_to_table(rows, pa.schema([("id", pa.string()), ("text", pa.string()), ("n", pa.int64())]))


def test_divert_unwritable_rejects_the_record_and_keeps_the_rest(tmp_path):
    from textbooklm.store import divert_unwritable, records_to_table

    kept = records(3)
    kept[1]["text"] = "half a pair: \ud83d"
    rejected = [{"id": "r", "text": "bad \udcff", "n": 9, "reason": "teacher-error", "detail": "x"}]
    good, out = divert_unwritable(kept, rejected)
    assert [r["id"] for r in good] == ["0", "2"]
    assert out[0]["text"] == "bad \\udcff" and out[0]["reason"] == "teacher-error"
    assert out[1] == {"id": "1", "text": "half a pair: \\ud83d", "n": 1, "reason": "invalid-unicode",
                      "detail": "column 'text': lone surrogate U+D83D at character 13 (stored escaped as \\udXXX)"}
    write_table(tmp_path / shard_name(0), records_to_table(out))  # now storable
    assert pq.read_table(tmp_path / shard_name(0)).num_rows == 2


def test_atomic_write_folder_publishes_whole_or_keeps_the_first(tmp_path):
    from textbooklm.store import atomic_write_folder

    def write(folder):
        (folder / "model.safetensors").write_bytes(b"one")

    target = atomic_write_folder(tmp_path / "m", write)
    assert (target / "model.safetensors").read_bytes() == b"one"
    # A second publisher finds the folder there: the first copy stays, no temp folder is left behind.
    atomic_write_folder(tmp_path / "m", lambda f: (f / "model.safetensors").write_bytes(b"two"))
    assert (target / "model.safetensors").read_bytes() == b"one"
    assert [p.name for p in tmp_path.iterdir()] == ["m"]
