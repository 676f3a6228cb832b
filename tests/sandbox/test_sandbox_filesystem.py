"""What a program's filesystem holds (fs_view.py): a read-only root of the interpreter, its packages and
its own work dir; no host files, sockets, home folders, /run or project checkout; private,
size-limited /tmp, /var/tmp, /run/lock and /dev/shm that are empty for every program and leave
nothing on the host.

The host files planted here sit in a folder every uid may traverse (mode 0755), so before the view
existed a program read them (issue 24, items 5-7)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import tempfile
from pathlib import Path

import pytest

import textbooklm
from textbooklm.sandbox import Limits, Program, SandboxPool

CHECKOUT = Path(textbooklm.__file__).resolve().parents[1]

PROBE = """import _io, json, os, socket, sys
out = {{}}
for name, path in {paths!r}.items():
    try:
        out[name] = _io.open(path).read()
    except OSError as e:
        out[name] = type(e).__name__
for name, folder in {folders!r}.items():
    try:
        out[name] = sorted(os.listdir(folder))
    except OSError as e:
        out[name] = type(e).__name__
s = socket.socket(socket.AF_UNIX)
try:
    s.connect({sock!r})
    out['socket'] = 'connected'
except OSError as e:
    out['socket'] = type(e).__name__
for target in ('/usr/planted.txt', '/planted.txt', {checkout_file!r}):
    try:
        _io.open(target, 'w').write('x')
        out[target] = 'written'
    except OSError as e:
        out[target] = type(e).__name__
try:
    import textbooklm.corpus
    out['import_checkout'] = 'imported'
except ImportError as e:
    out['import_checkout'] = type(e).__name__
import pydantic, sqlite3, decimal  # the venv's packages and the stdlib's C modules stay importable
out['sys_path'] = sys.path
print(json.dumps(out))
"""


@pytest.fixture
def host_folder():
    """A folder any uid may traverse (like a run folder or /srv), with a world-readable secret and a 0777
    Unix socket that accepts connections."""
    folder = Path(tempfile.mkdtemp(prefix="textbooklm-viewtest-"))
    folder.chmod(0o755)
    secret = folder / "teacher-cache.jsonl"
    secret.write_text("sk-" + secrets.token_hex(8))
    secret.chmod(0o644)
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(folder / "daemon.sock"))
    os.chmod(folder / "daemon.sock", 0o777)
    server.listen(8)
    try:
        yield folder
    finally:
        server.close()
        shutil.rmtree(folder, ignore_errors=True)


def test_programs_see_no_host_file_socket_or_checkout(tmp_path, host_folder):
    code = PROBE.format(
        paths={"secret": str(host_folder / "teacher-cache.jsonl"), "config": str(CHECKOUT / "pyproject.toml"),
               "corpus_module": str(CHECKOUT / "textbooklm" / "corpus" / "__init__.py"), "passwd": "/etc/passwd"},
        folders={"home": "/home", "run": "/run", "checkout": str(CHECKOUT), "root": "/"},
        sock=str(host_folder / "daemon.sock"), checkout_file=str(CHECKOUT / "planted.txt"))
    with SandboxPool(Limits(timeout_s=20, guard=False), workers=1, tmp_root=str(tmp_path)) as pool:
        r = pool.run([Program(id="probe", code=code)])[0]
        isolation = pool.isolation
    assert r.status == "passed", (r.error, r.stderr)
    if isolation["fs_view"] == "none":
        assert r.fs_view == "none" and any("no filesystem view" in n for n in r.isolation_notes)
        pytest.skip(f"no filesystem view here: {r.isolation_notes}")
    out = json.loads(r.stdout)
    assert r.fs_view == "read-only-root" and not (CHECKOUT / "planted.txt").exists()
    assert out["secret"] == out["config"] == out["corpus_module"] == "FileNotFoundError", out
    assert out["socket"] in ("FileNotFoundError", "ConnectionRefusedError"), out
    assert out["home"] == "FileNotFoundError" and out["run"] == ["lock"], out
    assert ".git" not in out["checkout"] and "configs" not in out["checkout"], out["checkout"]
    assert set(out["checkout"]) <= {"textbooklm", ".venv"}, out["checkout"]
    assert out["passwd"].startswith("root:")  # what Python needs from /etc is there
    for target in ("/usr/planted.txt", "/planted.txt", str(CHECKOUT / "planted.txt")):
        assert out[target] in ("OSError", "PermissionError", "FileNotFoundError"), (target, out[target])
    assert out["import_checkout"] == "ModuleNotFoundError"
    assert str(CHECKOUT) not in out["sys_path"] and not any(p in ("", ".") for p in out["sys_path"]), out["sys_path"]


SPILL = """import _io, os
for folder in ('/tmp', '/var/tmp', '/dev/shm', '/run/lock'):
    with _io.open(os.path.join(folder, {name!r}), 'w') as f:
        f.write('left behind')
os.mkdir('/tmp/{name}-dir')
print('ok')
"""
LOOK = """import json, os
print(json.dumps({f: sorted(os.listdir(f)) for f in ('/tmp', '/var/tmp', '/dev/shm', '/run/lock')}))
"""


def test_private_tmp_is_empty_for_every_program_and_leaves_nothing_on_host(tmp_path):
    name = f"textbooklm-left-{secrets.token_hex(6)}"
    host = [Path("/tmp") / name, Path("/var/tmp") / name, Path("/dev/shm") / name, Path("/tmp") / f"{name}-dir"]
    try:
        with SandboxPool(Limits(timeout_s=10, guard=False), workers=1, tmp_root=str(tmp_path)) as pool:
            spill, look = pool.run([Program(id="spill", code=SPILL.format(name=name)), Program(id="look", code=LOOK)])
            isolation = pool.isolation
        assert spill.status == "passed", (spill.error, spill.stderr)
        if not isolation["private_tmp"]:
            assert not spill.private_tmp and any("/tmp" in n for n in spill.isolation_notes)
            pytest.skip(f"no private /tmp here: {spill.isolation_notes}")
        assert spill.private_tmp and look.private_tmp
        seen = json.loads(look.stdout)
        assert all(name not in entry for entries in seen.values() for entry in entries), seen
        assert seen["/dev/shm"] == seen["/var/tmp"] == seen["/run/lock"] == []
        assert [p for p in host if os.path.lexists(p)] == []
    finally:
        for p in host:
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


FILL = """import _io
written = 0
try:
    with _io.open('/dev/shm/fill', 'wb') as f:
        for _ in range({cap_mb}):
            f.write(b'y' * (1 << 20))
            f.flush()
            written += 1
except OSError as e:
    print(type(e).__name__)
print(written)
"""


def test_private_shm_is_size_limited(tmp_path):
    limits = Limits(timeout_s=20, guard=False, tmp_mb=16)
    with SandboxPool(limits, workers=1, tmp_root=str(tmp_path)) as pool:
        r = pool.run([Program(id="fill", code=FILL.format(cap_mb=48))])[0]
    if not r.private_tmp:
        pytest.skip(f"no private /dev/shm here: {r.isolation_notes}")
    assert r.status == "passed", (r.error, r.stderr)
    error, written = r.stdout.split()
    assert error == "OSError" and int(written) <= 16, r.stdout  # ENOSPC at the tmpfs size


def test_private_tmp_size_fits_the_memory_limit():
    assert Limits(memory_mb=64, tmp_mb=64).private_tmp_mb() == 16
    assert Limits(memory_mb=4096, tmp_mb=64).private_tmp_mb() == 64
