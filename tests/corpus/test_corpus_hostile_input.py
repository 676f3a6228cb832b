"""Hostile input through the corpus: special files, dangling links, non-UTF-8 names, lone surrogates.

Every entry the reader sees must come out read or rejected with a reason, and nothing may crash or
block (a FIFO opened the ordinary way would hang a worker forever, so these tests run with timeouts).
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from corpus_fixtures import good_module

from textbooklm.corpus.config import SourceConfig
from textbooklm.corpus.readers import open_regular, plan_units, read_unit
from textbooklm.store import Dataset

BAD_NAME = b"bad_\xff\xfe_name.py"  # not valid UTF-8


def make_hostile_folder(root: Path) -> Path:
    """Seven entries matching ``**/*.py``: two good files (one with a non-UTF-8 name) and five that
    are not regular files. The socket stays bound only while the test's process lives, which is fine."""
    root.mkdir(parents=True)
    (root / "good.py").write_text(good_module(1))
    with open(os.path.join(os.fsencode(root), BAD_NAME), "wb") as fh:
        fh.write(good_module(2).encode())
    os.mkfifo(root / "pipe.py")
    os.symlink("/dev/zero", root / "zero.py")
    os.symlink(root / "nowhere" / "gone.py", root / "dangling.py")
    (root / "x.py").mkdir()
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "sock.py"))
    sock.close()  # the socket file stays on disk
    (root / "notes.txt").write_text("not matched by the glob\n")
    return root


def run_corpus_cli(tmp_path: Path, *sources: str, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """The real command in a child process, bounded in time: a blocked FIFO read fails the test."""
    cmd = [sys.executable, "-m", "textbooklm.cli", "corpus", *sources, "--out", str(tmp_path / "run"),
           "--workers", "2", "--files-per-shard", "2", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=240)


@pytest.mark.timeout(300)
def test_special_files_are_all_accounted_for(tmp_path):
    folder = make_hostile_folder(tmp_path / "src")
    proc = run_corpus_cli(tmp_path, str(folder))
    assert proc.returncode == 0, proc.stderr[-3000:]
    kept = Dataset(tmp_path / "run" / "corpus")
    rejected = Dataset(tmp_path / "run" / "corpus" / "rejected")
    seen = [e for e in os.listdir(os.fsencode(folder)) if e.endswith(b".py")]
    summary = kept.manifest["summary"]
    assert summary["read"] == len(seen) == 7
    assert kept.num_rows + rejected.num_rows == len(seen)
    reasons = {r["path"]: (r["reason"], r["detail"]) for r in rejected.iter_records()}
    assert reasons == {
        "pipe.py": ("not-a-regular-file", "a FIFO"),
        "sock.py": ("not-a-regular-file", "a socket"),
        "x.py": ("not-a-regular-file", "a directory"),
        "zero.py": ("outside-source", f"symlink to '/dev/zero', outside the source folder '{folder}'"),
        "dangling.py": ("dangling-link", f"symlink to '{folder}/nowhere/gone.py', which does not exist"),
    }
    assert summary["rejected_by_reason"] == {"not-a-regular-file": 3, "dangling-link": 1, "outside-source": 1}


@pytest.mark.timeout(300)
def test_non_utf8_file_name_is_kept_with_a_lossless_escaped_path(tmp_path):
    folder = make_hostile_folder(tmp_path / "src")
    proc = run_corpus_cli(tmp_path, str(folder))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {r["path"]: r for r in Dataset(tmp_path / "run" / "corpus").iter_records()}
    assert set(rows) == {"good.py", "bad_\\xff\\xfe_name.py"}
    row = rows["bad_\\xff\\xfe_name.py"]
    assert row["text"] == good_module(2)
    prov = json.loads(row["provenance"])["corpus"]
    assert prov["path_escaped"] == "backslashreplace"
    original = bytes.fromhex(prov["path_bytes_hex"])
    assert original == BAD_NAME
    assert (folder / os.fsdecode(original)).read_text() == good_module(2)  # reopens the very file
    assert "path_escaped" not in json.loads(rows["good.py"]["provenance"])["corpus"]


@pytest.mark.timeout(300)
def test_lone_surrogates_in_jsonl_are_rejected_not_a_crash(tmp_path):
    src = tmp_path / "recs.jsonl"
    lines = [
        json.dumps({"text": good_module(1), "name": "fine"}),
        '{"text": "def f():\\n    return \\"\\ud800\\"\\n", "name": "surrogate-text"}',
        json.dumps({"text": good_module(3), "name": "name-\ud83d-half"}),  # ensure_ascii writes \ud83d
    ]
    src.write_text("\n".join(lines) + "\n")
    proc = run_corpus_cli(tmp_path, str(src), extra=("--text-column", "text", "--min-lines", "1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    # The CLI's guess_source has no path_column option; read the stored paths as recs.jsonl:N.
    kept = Dataset(tmp_path / "run" / "corpus")
    rejected = list(Dataset(tmp_path / "run" / "corpus" / "rejected").iter_records())
    assert kept.manifest["summary"]["read"] == 3
    assert kept.num_rows == 2 and len(rejected) == 1
    bad = rejected[0]
    assert bad["path"] == f"{src}:2" and bad["reason"] == "invalid-unicode"
    assert bad["detail"].startswith("lone surrogate U+D800 at character 21")
    assert "\\ud800" in bad["text"]  # kept, escaped, so the user sees what was there


def test_surrogate_in_path_column_is_escaped_losslessly(tmp_path):
    from textbooklm.corpus.stage import storable_path

    src = tmp_path / "recs.jsonl"
    src.write_text(json.dumps({"text": good_module(3), "name": "name-\ud83d-half"}) + "\n")
    source = SourceConfig(kind="jsonl", path=str(src), path_column="name")
    [item] = [i for u in plan_units(source) for i in read_unit(u, source, 10**6)]
    path, prov = storable_path(item.path)
    assert path == "name-\\xed\\xa0\\xbd-half"
    assert bytes.fromhex(prov["path_bytes_hex"]).decode("utf-8", "surrogatepass") == "name-\ud83d-half"


@pytest.mark.timeout(30)
def test_opening_a_fifo_never_blocks(tmp_path):
    fifo = tmp_path / "late.py"
    os.mkfifo(fifo)
    fh, why = open_regular(fifo)
    assert fh is None and why == ("not-a-regular-file", "a FIFO")


@pytest.mark.timeout(60)
def test_fifo_and_dangling_sources_of_every_kind_are_rejected(tmp_path):
    """A jsonl / parquet / archive source path that is a FIFO, and one behind a dangling link."""
    for kind, name in (("jsonl", "a.jsonl"), ("parquet", "a.parquet"), ("archive", "a.whl")):
        fifo = tmp_path / f"fifo-{name}"
        os.mkfifo(fifo)
        source = SourceConfig(kind=kind, path=str(fifo))
        items = [i for u in plan_units(source) for i in read_unit(u, source, 10**6)]
        assert [(i.error, i.detail) for i in items] == [("not-a-regular-file", "a FIFO")], kind
        folder = tmp_path / f"dir-{kind}"
        folder.mkdir()
        os.symlink(folder / "missing", folder / name)  # within the folder (one leading out is outside-source)
        source = SourceConfig(kind=kind, path=str(folder))
        items = [i for u in plan_units(source) for i in read_unit(u, source, 10**6)]
        assert [i.error for i in items] == ["dangling-link"], kind


def test_tar_members_that_are_not_files_are_rejected(tmp_path):
    path = tmp_path / "src.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        data = good_module(5).encode()
        info = tarfile.TarInfo("pkg/a.py")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("pkg/link.py")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
        folder = tarfile.TarInfo("pkg/x.py")
        folder.type = tarfile.DIRTYPE
        tf.addfile(folder)
    source = SourceConfig(kind="archive", path=str(path))
    items = [i for u in plan_units(source) for i in read_unit(u, source, 10**6)]
    assert [(i.path.split("!/")[1], i.error, i.detail) for i in items] == [
        ("pkg/a.py", None, ""),
        ("pkg/link.py", "not-a-regular-file", "archive member is a symlink"),
        ("pkg/x.py", "not-a-regular-file", "archive member is a directory"),
    ]


@pytest.mark.timeout(30)
def test_entries_swapped_for_a_fifo_after_planning_never_block(tmp_path):
    from corpus_fixtures import make_parquet

    folder = tmp_path / "code"
    folder.mkdir()
    (folder / "a.py").write_text(good_module(1))
    sources = [SourceConfig(kind="folder", path=str(folder)),
               SourceConfig(kind="parquet", path=str(make_parquet(tmp_path / "t.parquet")))]
    planned = [(source, plan_units(source)) for source in sources]
    for path in (folder / "a.py", tmp_path / "t.parquet"):
        path.unlink()
        os.mkfifo(path)
    for source, units in planned:
        items = [i for u in units for i in read_unit(u, source, 10**6)]
        assert {(i.error, i.detail) for i in items} == {("not-a-regular-file", "a FIFO")}, source.kind


def make_linking_folder(tmp_path: Path) -> tuple[Path, Path]:
    """A source folder whose symlinks lead out of it (to a 'secret' file and folder) and within it."""
    outside = tmp_path / "outside"
    (outside / "keys").mkdir(parents=True)
    (outside / "secret.py").write_text(good_module(99) + "# SECRET-TOKEN\n")
    (outside / "keys" / "id_rsa.py").write_text(good_module(98) + "# SECRET-KEY\n")
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "good.py").write_text(good_module(1))
    (src / "pkg" / "inner.py").write_text(good_module(2))
    os.symlink(outside / "secret.py", src / "absolute.py")  # absolute link out
    os.symlink("../outside/secret.py", src / "relative.py")  # relative link out
    os.symlink("relative.py", src / "chain.py")  # a link to a link that leads out
    os.symlink(outside / "keys", src / "vendor")  # a folder out (its name does not match the glob)
    os.symlink("pkg", src / "pkg_alias")  # a folder within: not followed, but counted
    os.symlink("good.py", src / "alias.py")  # a file within: read
    return src, outside


def test_symlinks_that_leave_the_source_folder_are_rejected_unread(tmp_path):
    src, _ = make_linking_folder(tmp_path)
    source = SourceConfig(kind="folder", path=str(src))
    items = {i.path: i for u in plan_units(source) for i in read_unit(u, source, 10**6)}
    assert set(items) == {"good.py", "pkg/inner.py", "absolute.py", "relative.py", "chain.py", "vendor",
                          "pkg_alias", "alias.py"}
    for name in ("absolute.py", "relative.py", "chain.py", "vendor"):
        assert items[name].error == "outside-source" and items[name].data is None, name
        assert "outside the source folder" in items[name].detail
    assert (items["pkg_alias"].error, items["pkg_alias"].detail) == ("not-a-regular-file",
                                                                     "a directory (symlink to 'pkg')")
    assert items["alias.py"].error is None and items["alias.py"].data == good_module(1).encode()


@pytest.mark.timeout(300)
def test_outside_source_links_are_kept_in_the_rejected_dataset(tmp_path):
    src, _ = make_linking_folder(tmp_path)
    proc = run_corpus_cli(tmp_path, str(src))
    assert proc.returncode == 0, proc.stderr[-3000:]
    kept = Dataset(tmp_path / "run" / "corpus")
    rejected = {r["path"]: r for r in Dataset(tmp_path / "run" / "corpus" / "rejected").iter_records()}
    assert {p for p, r in rejected.items() if r["reason"] == "outside-source"} == {
        "absolute.py", "relative.py", "chain.py", "vendor"}
    assert rejected["pkg_alias"]["reason"] == "not-a-regular-file"
    everything = [r["text"] or "" for r in kept.iter_records()] + [r["text"] or "" for r in rejected.values()]
    assert not any("SECRET" in t for t in everything)
    summary = kept.manifest["summary"]
    assert summary["read"] == 8 and summary["rejected_by_reason"]["outside-source"] == 4


def test_jsonl_and_archive_folders_reject_links_that_leave_them(tmp_path):
    from corpus_fixtures import make_jsonl

    outside = make_jsonl(tmp_path / "elsewhere.jsonl")
    folder = tmp_path / "shards"
    folder.mkdir()
    make_jsonl(folder / "a.jsonl")
    os.symlink(outside, folder / "b.jsonl")
    source = SourceConfig(kind="jsonl", path=str(folder))
    items = [i for u in plan_units(source) for i in read_unit(u, source, 10**6)]
    out = [i for i in items if i.error == "outside-source"]
    assert [i.path for i in out] == [str(folder / "b.jsonl")]
    assert items and all(i.path.startswith(str(folder / "a.jsonl")) for i in items if i not in out)
    (tmp_path / "x.whl").write_bytes(b"")
    os.symlink(tmp_path / "x.whl", folder / "y.whl")
    source = SourceConfig(kind="archive", path=str(folder))
    items = [i for u in plan_units(source) for i in read_unit(u, source, 10**6)]
    assert [(i.path, i.error) for i in items] == [(str(folder / "y.whl"), "outside-source")]


def test_parquet_folder_rejects_a_link_that_leaves_it_before_opening_it(tmp_path):
    from corpus_fixtures import make_parquet

    folder = tmp_path / "tables"
    folder.mkdir()
    os.symlink(make_parquet(tmp_path / "t.parquet"), folder / "t.parquet")
    source = SourceConfig(kind="parquet", path=str(folder))
    units = plan_units(source)
    assert [(u["reason"], u["row_group"]) for u in units] == [("outside-source", -1)]
    assert [i.error for u in units for i in read_unit(u, source, 10**6)] == ["outside-source"]


@pytest.mark.timeout(120)
def test_a_thousand_level_folder_tree_is_walked_without_recursion(tmp_path):
    root = tmp_path / "deep"
    bottom = root
    for _ in range(1000):  # os.makedirs itself recurses once per level
        bottom = bottom / "d"
        bottom.mkdir(parents=bottom.parent == root)
    (bottom / "bottom.py").write_text(good_module(7))
    (root / "top.py").write_text(good_module(8))
    try:
        source = SourceConfig(kind="folder", path=str(root))
        items = [i for u in plan_units(source) for i in read_unit(u, source, 10**6)]
        assert sorted(i.path.count("/") for i in items) == [0, 1000]
        assert all(i.error is None for i in items)
    finally:  # shutil.rmtree (pytest's clean-up of old tmp folders) recurses once per level too
        (bottom / "bottom.py").unlink()
        while bottom != root:
            bottom.rmdir()
            bottom = bottom.parent
