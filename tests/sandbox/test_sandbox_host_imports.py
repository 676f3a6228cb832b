"""No host process imports a module a program planted.

The attack (issue 24, item 1): workers were started with ``cwd`` = the tmp root (``/tmp``), so
``sys.path[0]`` of every new worker was a folder programs can write. A program that wrote
``bisect.py`` there (with ``_io.open``, which the accident guard does not see) had it imported by the
next worker: as root, in the host's namespaces, able to read the parent's API key. Here a program
plants modules into every folder it can reach, and then new workers, and host Pythons started in
the tmp root, must not run them. The tmp root is a private folder with /tmp's mode (1777), so the
test touches no other process.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from textbooklm.sandbox import Limits, Program, SandboxPool

# Module names a worker (zygote.py) or any Python start-up imports; sitecustomize runs at start-up.
PLANTED = ("bisect", "heapq", "fractions", "statistics", "textwrap", "decimal", "sitecustomize",
           "usercustomize", "argparse", "json")

PLANT = """import _io, os, sys
marker = {marker!r}
payload = "import os\\nopen(" + repr(marker) + " + '-' + str(os.getpid()), 'w').write(__file__)\\n"
folders = {{os.getcwd(), os.path.dirname(os.getcwd()), os.path.dirname(os.path.dirname(os.getcwd())),
           os.environ.get('TMPDIR', ''), os.environ.get('HOME', ''), *sys.path}}
planted = []
for folder in sorted(f for f in folders if f):
    for name in {names!r}:
        try:
            with _io.open(os.path.join(folder, name + '.py'), 'w') as f:
                f.write(payload)
            planted.append(folder)
        except OSError:
            pass
print(sorted(set(planted)))
"""


def _pwned(marker: Path) -> list[str]:
    return sorted(str(p) for p in marker.parent.glob(marker.name + "-*"))


def test_planted_modules_are_never_imported_by_a_host_process(tmp_path):
    root = tmp_path / "tmp"
    root.mkdir()
    root.chmod(0o1777)  # like /tmp: anyone may create files here
    marker = tmp_path / "marker" / "pwned"
    marker.parent.mkdir()
    marker.parent.chmod(0o1777)  # a planted module running as any uid could leave its mark
    code = PLANT.format(marker=str(marker), names=PLANTED)
    with SandboxPool(Limits(timeout_s=5, guard=True), workers=1, tmp_root=str(root)) as pool:
        r = pool.run([Program(id="plant", code=code)])[0]
    assert r.status == "passed", (r.error, r.stderr)
    # The program may still write its own work dir (removed after it) and the tmp root when it is
    # the host's /tmp-like folder; what matters is that nothing it wrote is ever imported.
    with SandboxPool(Limits(timeout_s=5), workers=2, tmp_root=str(root)) as pool:
        again = pool.run([Program(id=f"p{i}", code="import bisect, heapq\nprint(bisect.__file__)")
                          for i in range(2)])
    assert [x.status for x in again] == ["passed", "passed"], [(x.error, x.stderr) for x in again]
    assert all(str(root) not in x.stdout for x in again), [x.stdout for x in again]
    assert _pwned(marker) == [], "a host process imported a planted module"


def test_the_tmp_root_is_not_writable_by_programs(tmp_path):
    """Work dirs live in a pool-private folder only the pool's user may write (programs cannot
    create files next to their work dir, nor replace it)."""
    root = tmp_path / "tmp"
    root.mkdir()
    root.chmod(0o1777)
    code = ("import _io, os\nparent = os.path.dirname(os.getcwd())\n"
            "try:\n    _io.open(os.path.join(parent, 'x.py'), 'w').close()\n    print('wrote', parent)\n"
            "except OSError as e:\n    print('refused', e.errno)\n")
    with SandboxPool(Limits(timeout_s=5, guard=False), workers=1, tmp_root=str(root)) as pool:
        private = Path(pool.tmp_root)
        info = os.lstat(private)
        r = pool.run([Program(id="w", code=code)])[0]
    assert r.status == "passed", (r.error, r.stderr)
    assert private.parent == root and info.st_uid == os.geteuid()
    assert not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if r.uid != os.geteuid():  # programs run as another uid: they cannot write there
        assert r.stdout.startswith("refused"), r.stdout
    assert not private.exists(), "the pool's private folder outlived the pool"


def test_a_host_python_started_in_the_tmp_root_ignores_planted_modules(tmp_path):
    """The `textbooklm` command sets PYTHONSAFEPATH for every Python it starts (fork server,
    resource tracker, loky): none of them puts its cwd on sys.path."""
    (tmp_path / "bisect.py").write_text("raise SystemExit('planted bisect imported')\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONSAFEPATH"}
    code = ("import textbooklm.cli, subprocess, sys\n"
            "textbooklm.cli.make_child_pythons_safe()\n"
            "raise SystemExit(subprocess.run([sys.executable, '-c', 'import bisect']).returncode)\n")
    proc = subprocess.run([sys.executable, "-P", "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
