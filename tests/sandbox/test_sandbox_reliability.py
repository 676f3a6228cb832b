"""Each hazard must be contained, reported with the right status, and leave host and harness intact."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from textbooklm.sandbox import Limits, Program, SandboxPool

CHECK_FAILS = "def check(c):\n    assert c() == 1, 'check ran and failed'\n"

HAZARDS: dict[str, tuple[str, str, set[str]]] = {
    # name: (code, test, allowed statuses)
    "infinite_loop": ("while True:\n    pass\n", "", {"timeout"}),
    "regex_c_call": ("import re\nre.match(r'(a*)*b', 'a' * 60)\n", "", {"timeout"}),
    "huge_power": ("x = 10 ** 10 ** 9\n", "", {"timeout"}),
    "sleep": ("import time\ntime.sleep(60)\n", "", {"timeout"}),
    "fork_bomb_guarded": ("import os\nwhile True:\n    os.fork()\n", "", {"failed"}),
    "fork_bomb_ctypes": ("import ctypes\nlibc = ctypes.CDLL(None)\nwhile True:\n    libc.fork()\n", "",
                         {"timeout", "crashed", "failed", "memory"}),
    "memory_bomb": ("x = bytearray(1 << 40)\n", "", {"memory"}),
    "memory_bomb_growing": ("x = []\nwhile True:\n    x.append(' ' * (1 << 24))\n", "", {"memory"}),
    "deep_recursion": ("def f(n):\n    return f(n + 1)\nf(0)\n", "", {"failed"}),
    "deep_recursion_unlimited": ("import sys\nsys.setrecursionlimit(10**9)\ndef f(n):\n    return f(n + 1)\nf(0)\n",
                                 "", {"crashed", "timeout", "memory", "failed"}),
    "output_flood": ("while True:\n    print('x' * 1000)\n", "", {"timeout"}),
    "stdin": ("input()\n", "", {"failed"}),
    "sys_exit_before_tests": ("import sys\nsys.exit(0)\ndef f():\n    return 2\n", CHECK_FAILS, {"failed"}),
    "os_exit_before_tests": ("import os\nos._exit(0)\ndef f():\n    return 2\n", CHECK_FAILS, {"crashed"}),
    "kill_parent_guarded": ("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n", "", {"failed"}),
    "kill_parent_ctypes": ("import ctypes, os\nlibc = ctypes.CDLL(None)\nlibc.kill(os.getppid(), 9)\n"
                           "libc.kill(1, 9)\nlibc.kill(-1, 9)\n", "", {"crashed", "passed"}),
    "thread_outlives_test": ("import threading, time\ndef spin():\n    while True:\n        time.sleep(0.01)\n"
                             "threading.Thread(target=spin).start()\ndef f():\n    return 1\n",
                             CHECK_FAILS, {"passed"}),
    "patch_harness": ("import os, json, sys\nos._exit = lambda c: None\nos.write = lambda *a: 0\n"
                      "json.dumps = lambda *a, **k: '{\"status\": \"passed\"}'\nsys.exit = lambda *a: None\n"
                      "def f():\n    return 2\n", CHECK_FAILS, {"failed"}),
    "forge_verdict": ("import os\nfor fd in range(3, 64):\n    try:\n"
                      "        os.write(fd, b'{\"status\": \"passed\", \"nonce\": \"0\"}')\n"
                      "    except OSError:\n        pass\ndef f():\n    return 2\n", CHECK_FAILS, {"failed"}),
}


# Only safe to run where the OS contains them: a ctypes fork bomb needs an enforced process limit
# (a pids cgroup, or RLIMIT_NPROC for an unprivileged program), and kill(-1) needs a PID namespace.
NEEDS_CONTAINMENT = {"fork_bomb_ctypes": "process_limit", "kill_parent_ctypes": "pid_namespace"}


def _contained(isolation: dict, need: str) -> bool:
    if need == "pid_namespace":
        return bool(isolation.get("pid_namespace"))
    return isolation.get("process_limit") in ("cgroup-v1", "cgroup-v2", "rlimit-nproc")


@pytest.fixture(scope="module")
def hazard_results(tmp_path_factory):
    root = tmp_path_factory.mktemp("sbx")
    limits = Limits(timeout_s=1.0, memory_mb=512)
    # Filling 512 MiB takes ~1 s on a loaded 2-core box: give that one a 6 s limit via reference_s.
    programs = [Program(id=name, code=code, test=test, entry_point="f" if test else "",
                        reference_s=1.5 if name == "memory_bomb_growing" else None)
                for name, (code, test, _) in HAZARDS.items()]
    programs.append(Program(id="control", code="def f():\n    return 1\n", test=CHECK_FAILS, entry_point="f"))
    with SandboxPool(limits, workers=2, tmp_root=str(root)) as pool:
        programs = [p for p in programs
                    if p.id not in NEEDS_CONTAINMENT or _contained(pool.isolation, NEEDS_CONTAINMENT[p.id])]
        results = {r.id: r for r in pool.run(programs)}
        after = pool.run([Program(id="after", code="print('still fine')")])[0]
    return results, after, root


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(HAZARDS))
def test_hazard_is_contained_and_reported(hazard_results, name):
    results, _, _ = hazard_results
    if name not in results:
        pytest.skip(f"{name}: this host does not contain it ({NEEDS_CONTAINMENT[name]} unavailable)")
    r = results[name]
    assert r.status in HAZARDS[name][2], (name, r.status, r.error)
    assert r.duration_s < 8.0


@pytest.mark.slow
def test_harness_survives_every_hazard(hazard_results):
    results, after, root = hazard_results
    assert results["control"].status == "passed"
    assert after.status == "passed" and after.stdout == "still fine\n"
    assert list(root.iterdir()) == []  # every work dir removed


@pytest.mark.slow
def test_reports_are_specific(hazard_results):
    results, _, _ = hazard_results
    assert "os.fork is disabled" in results["fork_bomb_guarded"].error
    assert "EOFError" in results["stdin"].error
    assert "SystemExit" in results["sys_exit_before_tests"].error
    assert "check ran and failed" in results["patch_harness"].error
    assert results["output_flood"].stdout_truncated and len(results["output_flood"].stdout) == 65536
    assert "RecursionError" in results["deep_recursion"].error


def test_failing_assertion_is_named(tmp_path):
    test = "def check(candidate):\n    assert candidate(1) == 2\n    assert candidate(2) == 5\n"
    with SandboxPool(Limits(timeout_s=2), workers=1, tmp_root=str(tmp_path)) as pool:
        r = pool.run([Program(id="a", code="def g(x):\n    return x + 1\n", test=test, entry_point="g")])[0]
    assert r.status == "failed"
    assert r.error == "AssertionError at test line 3: assert candidate(2) == 5"


def test_files_outside_work_dir_are_safe(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    keep = victim / "keep.txt"
    keep.write_text("precious")
    programs = [
        Program(id="write", code=f"open({str(victim / 'new.txt')!r}, 'w').write('x')\n"),
        Program(id="remove", code=f"import os\nos.remove({str(keep)!r})\n"),
        Program(id="rmtree", code=f"import shutil\nshutil.rmtree({str(victim)!r})\n"),
        Program(id="system", code=f"import os\nos.system('rm -rf {victim}')\n"),
        Program(id="subprocess", code=f"import subprocess\nsubprocess.run(['rm', '-rf', {str(victim)!r}])\n"),
        Program(id="own_dir", code="import os, shutil\nopen('a.txt', 'w').write('x')\nos.mkdir('d')\n"
                                   "os.rename('a.txt', 'd/b.txt')\nshutil.rmtree('d')\n"),
    ]
    (tmp_path / "work").mkdir()
    with SandboxPool(Limits(timeout_s=2), workers=2, tmp_root=str(tmp_path / "work")) as pool:
        results = {r.id: r for r in pool.run(programs)}
    for name in ("write", "remove", "rmtree", "system", "subprocess"):
        assert results[name].status == "failed", (name, results[name].error)
        assert "sandbox:" in results[name].error
    assert results["own_dir"].status == "passed", results["own_dir"].error
    assert keep.read_text() == "precious" and not (victim / "new.txt").exists()


def test_network_is_unreachable(tmp_path):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(3)
    port = server.getsockname()[1]
    accepted: list[object] = []

    def accept() -> None:
        try:
            accepted.append(server.accept())
        except OSError:
            pass

    thread = threading.Thread(target=accept)
    thread.start()
    code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2).sendall(b'hi')\n"
    with SandboxPool(Limits(timeout_s=3), workers=1, tmp_root=str(tmp_path)) as pool:
        if not pool.isolation.get("network_isolated"):
            server.close()
            thread.join()
            pytest.skip(f"no network namespace here: {pool.isolation.get('notes')}")
        r = pool.run([Program(id="net", code=code)])[0]
    thread.join()
    server.close()
    assert r.status == "failed" and "OSError" in r.error or "Error" in r.error
    assert r.network_isolated and accepted == []


def test_time_limit_scales_with_reference_runtime(tmp_path):
    code = "import time\ntime.sleep(0.6)\n"
    limits = Limits(timeout_s=0.3, timeout_factor=4.0)
    with SandboxPool(limits, workers=2, tmp_root=str(tmp_path)) as pool:
        slow_ref, floor = pool.run([Program(id="a", code=code, reference_s=0.25), Program(id="b", code=code)])
    assert slow_ref.status == "passed" and slow_ref.wall_limit_s == pytest.approx(1.0)
    assert floor.status == "timeout" and floor.wall_limit_s == pytest.approx(0.3)


def test_program_record_errors_name_the_record():
    with pytest.raises(ValueError, match="x.jsonl:3: missing key"):
        Program.from_record({"id": "a"}, where="x.jsonl:3")
    with pytest.raises(ValueError, match="'code' must be a string"):
        Program.from_record({"id": "a", "code": 1}, where="x.jsonl:3")


def test_workdir_is_fresh_and_private(tmp_path):
    code = "import os\nassert os.listdir('.') == [], os.listdir('.')\nopen('f', 'w').write('x')\nprint(os.getcwd())\n"
    with SandboxPool(Limits(timeout_s=2), workers=1, tmp_root=str(tmp_path)) as pool:
        a, b = pool.run([Program(id="a", code=code), Program(id="b", code=code)])
    assert a.status == b.status == "passed", (a.error, b.error)
    # in the pool's private folder inside the tmp root (sandbox/private_root.py)
    assert a.stdout != b.stdout and Path(a.stdout.strip()).parent.parent == tmp_path
    assert not Path(a.stdout.strip()).exists()
