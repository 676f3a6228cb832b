"""Verdicts the program cannot forge, and nothing of an earlier program in a program's memory.

The test runs in its own process (another uid, non-dumpable) and calls the program's process with
data (call_proxy.py); each process forks from a fork server that never held program data
(forkserver.py). Every attack here got ``passed`` (or found its target) when the test ran in the
program's interpreter and programs forked from the worker.
"""

from __future__ import annotations

import json
import secrets

import pytest

from textbooklm.sandbox import Limits, Program, SandboxPool

CHECK = "def check(candidate):\n    assert candidate(2) == 4\n    assert candidate(5) == 10\n"

# The attack of issue 24: walk the stack to the harness, take its nonce and saved os.write, write
# a ``passed`` verdict on its private pipe and exit before the assertion fails.
FRAME_WALKER = """
import json, sys
def f(x):
    frame = sys._getframe()
    while frame is not None:
        seen = frame.f_locals
        if 'nonce' in seen and 'write' in seen and 'res_w' in seen:
            verdict = {'nonce': seen['nonce'], 'status': 'passed', 'error': '', 'traceback': ''}
            seen['write'](seen['res_w'], ('\\n' + json.dumps(verdict) + '\\n').encode())
            seen['exit_now'](0)
        for value in list(seen.values()):   # the new harness: its channel, answering for the test
            if type(value).__name__ == 'Endpoint':
                value.send({'r': 4 if x == 2 else 10})
        frame = frame.f_back
    return x + 1
"""

# Names the test relies on, bent: builtins it calls, a module it uses, AssertionError itself, and
# objects whose == always says yes (a plain class, and an int subclass).
BENT_NAMES = """
import builtins, math
builtins.AssertionError = type('Harmless', (Exception,), {})
abs = lambda x: 0
class _Fake:
    def __getattr__(self, name):
        return lambda *a, **k: True
math = _Fake()
def f(x):
    return x + 1
"""
ALWAYS_EQUAL = """
class Yes:
    def __eq__(self, other):
        return True
    __hash__ = None
def f(x):
    return Yes()
"""
ALWAYS_EQUAL_INT = """
class Yes(int):
    def __eq__(self, other):
        return True
def f(x):
    return Yes(x + 1)
"""
USES_BENT = ("def check(candidate):\n    assert abs(candidate(2) - 4) < 1e-9\n"
             "    assert math.isclose(candidate(5), 10)\n")  # math: the program's import, as HumanEval/32's test
COMPARES = "def check(candidate):\n    assert candidate(2) == 4\n    assert candidate(5) == 10\n"

EXIT_EARLY = {
    "os_exit_in_call": ("import os\ndef f(x):\n    os._exit(0)\n", "crashed"),
    "os_exit_top_level": ("import os\nos._exit(0)\ndef f(x):\n    return 2 * x\n", "crashed"),
    "sys_exit_in_call": ("import sys\ndef f(x):\n    sys.exit(0)\n", "failed"),
    "kill_self_in_call": ("import os, signal, ctypes\ndef f(x):\n    ctypes.CDLL(None).kill(os.getpid(), 9)\n",
                          "crashed"),
    "garbage_on_every_fd": ("import os\ndef f(x):\n    for fd in range(64):\n        try:\n"
                            "            os.write(fd, b'\\x00\\x00\\x00\\x05{\"r\":4}' * 3)\n"
                            "        except OSError:\n            pass\n    return x + 1\n", "failed"),
}


def _run(programs: list[Program], workers: int = 1, **limits) -> dict:
    with SandboxPool(Limits(timeout_s=limits.pop("timeout_s", 5), **limits), workers=workers) as pool:
        return {r.id: r for r in pool.run(programs)}


def test_frame_walking_forger_fails():
    r = _run([Program(id="forger", code=FRAME_WALKER, test=CHECK, entry_point="f")])["forger"]
    assert r.status == "failed", (r.status, r.error)


@pytest.mark.parametrize("name", sorted(EXIT_EARLY))
def test_ending_early_or_garbling_the_channel_is_not_a_pass(name):
    code, expected = EXIT_EARLY[name]
    r = _run([Program(id=name, code=code, test=CHECK, entry_point="f")])[name]
    assert r.status == expected, (r.status, r.error)


@pytest.mark.parametrize("code,test", [(BENT_NAMES, USES_BENT), (ALWAYS_EQUAL, COMPARES), (ALWAYS_EQUAL_INT, COMPARES)],
                         ids=["bent", "yes", "yes_int"])
def test_patched_builtins_modules_and_always_equal_objects_do_not_pass(code, test):
    r = _run([Program(id="p", code=code, test=test, entry_point="f")])["p"]
    assert r.status == "failed", (r.status, r.error)


def test_right_answers_still_pass_through_the_same_tests():
    good = "import math\ndef f(x):\n    return 2 * x\n"
    results = _run([Program(id="g", code=good, test=USES_BENT, entry_point="f"),
                    Program(id="h", code=good, test=COMPARES, entry_point="f")])
    assert [r.status for r in results.values()] == ["passed", "passed"], [r.error for r in results.values()]


# A program that looks for something in its own memory (every readable mapping of /proc/self/mem).
# It counts a target next to a control string built the same way and never used anywhere else: its
# own copies of both needles are counted alike, so any surplus for the target is a leaked copy.
SCAN = """
def _scan(needles):
    counts = [0] * len(needles)
    with open('/proc/self/maps') as maps, open('/proc/self/mem', 'rb', 0) as mem:
        for line in maps:
            span, perms = line.split()[:2]
            lo, hi = (int(x, 16) for x in span.split('-'))
            if 'r' not in perms or hi - lo > 1 << 30:
                continue
            try:
                mem.seek(lo)
                data = mem.read(hi - lo)
            except (OSError, ValueError, OverflowError):
                continue
            for i, needle in enumerate(needles):
                counts[i] += data.count(needle)
    return counts
def f(x):
    print('SCAN', _scan([{target!r}[::-1].encode(), {control!r}[::-1].encode()]))
    return 2 * x
"""


def _scan_counts(result) -> list[int]:
    lines = [ln for ln in result.stdout.splitlines() if ln.startswith("SCAN")]
    assert lines, (result.status, result.error, result.stderr[-500:])
    return json.loads(lines[-1][4:])


def test_program_never_holds_its_hidden_test():
    secret, control = "hidden" + secrets.token_hex(12), "control" + secrets.token_hex(12)
    test = CHECK + f"    assert {secret!r} != 'x'\n"
    code = SCAN.format(target=secret[::-1], control=control[::-1])
    r = _run([Program(id="reader", code=code, test=test, entry_point="f")])["reader"]
    assert r.status == "passed", (r.error, r.stderr[-800:])
    target, baseline = _scan_counts(r)
    assert target == baseline, (target, baseline)


def test_next_program_finds_nothing_of_the_previous_one_in_its_memory():
    secret, control = "previous" + secrets.token_hex(12), "control" + secrets.token_hex(12)
    earlier = Program(id="earlier", code=f"def f(x):\n    print({secret!r})\n    return 2 * x\n",
                      test=CHECK + f"    assert {secret!r}\n", entry_point="f")
    later = Program(id="later", code=SCAN.format(target=secret[::-1], control=control[::-1]), test=CHECK,
                    entry_point="f")
    results = _run([earlier, later], workers=1)  # one warm worker: the second runs right after the first
    assert results["earlier"].status == "passed" and secret in results["earlier"].stdout
    assert results["later"].status == "passed", (results["later"].error, results["later"].stderr[-800:])
    target, baseline = _scan_counts(results["later"])
    assert target == baseline, (target, baseline)


REACH_THE_TEST = """
import ctypes, os
def f(x):
    libc = ctypes.CDLL(None, use_errno=True)
    me, report = os.getpid(), {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit() or int(entry) == me:
            continue
        pid = int(entry)
        killed = libc.kill(pid, 9) == 0
        try:
            with open(f'/proc/{pid}/mem', 'rb') as m:
                m.read(1)
            mem = True
        except OSError:
            mem = False
        attached = libc.ptrace(16, pid, 0, 0) == 0  # PTRACE_ATTACH
        report[pid] = [killed, mem, attached]
    print('REACH', report)
    return x + 1
"""


def test_the_test_process_is_out_of_the_programs_reach():
    with SandboxPool(Limits(timeout_s=5), workers=1) as pool:
        if pool.isolation.get("uid") in (None, 0):
            pytest.skip(f"programs run as root here: {pool.isolation.get('notes')}")
        r = pool.run([Program(id="reach", code=REACH_THE_TEST, test=CHECK, entry_point="f")])[0]
    assert r.status == "failed", (r.status, r.error)  # the test lived to fail the wrong answer
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("REACH")][0]
    assert "True" not in line, line  # no signal, no /proc/PID/mem, no ptrace of any other process


# What a test may still do with the program: objects by handle, in-place mutation, callbacks,
# exceptions by builtin type, prints a test captures, a per-call alarm.
USES = {
    "stack_object": ("class Stack:\n    def __init__(self):\n        self.items = []\n"
                     "    def push(self, v):\n        self.items.append(v)\n    def pop(self):\n"
                     "        return self.items.pop()\n    def __len__(self):\n        return len(self.items)\n"
                     "def make():\n    return Stack()\n",
                     "def check(candidate):\n    s = candidate()\n    s.push(1)\n    s.push(2)\n"
                     "    assert len(s) == 2 and s.pop() == 2 and s.items == [1]\n", "make", "passed"),
    "sort_in_place": ("def f(a, d):\n    a.sort()\n    d['k'] = 1\n",
                      "def check(candidate):\n    a, d = [3, 1, 2], {}\n    assert candidate(a, d=d) is None\n"
                      "    assert a == [1, 2, 3] and d == {'k': 1}\n", "f", "passed"),
    "callback": ("def f(xs, key):\n    return sorted(xs, key=key)\n",
                 "def check(candidate):\n    assert candidate([1, 3, 2], lambda v: -v) == [3, 2, 1]\n", "f", "passed"),
    "own_exception": ("class Bad(ValueError):\n    pass\ndef f(x):\n    raise Bad('no ' + str(x))\n",
                      "def check(candidate):\n    try:\n        candidate(1)\n    except ValueError as e:\n"
                      "        assert str(e) == 'no 1'\n    else:\n        assert False\n", "f", "passed"),
    "captured_print": ("def f(x):\n    print('value', x)\n",
                       "import contextlib, io\ndef check(candidate):\n    buf = io.StringIO()\n"
                       "    with contextlib.redirect_stdout(buf):\n        candidate(3)\n"
                       "    assert buf.getvalue() == 'value 3\\n'\n", "f", "passed"),
    "generator": ("def f(n):\n    yield from range(n)\n",
                  "def check(candidate):\n    assert list(candidate(3)) == [0, 1, 2]\n", "f", "passed"),
    "top_level_test": ("def double(x):\n    return 2 * x\nTABLE = {'a': [1, (2, 3)]}\n",
                       "assert double(4) == 8 and TABLE == {'a': [1, (2, 3)]}\n", "", "passed"),
    "per_call_alarm": ("def f(x):\n    while x < 0:\n        pass\n    return x\n",
                       "import signal\nclass Slow(BaseException):\n    pass\ndef _alarm(*a):\n    raise Slow()\n"
                       "def check(candidate):\n    signal.signal(signal.SIGALRM, _alarm)\n"
                       "    signal.setitimer(signal.ITIMER_REAL, 0.3)\n    try:\n        candidate(-1)\n"
                       "    except Slow:\n        pass\n    signal.setitimer(signal.ITIMER_REAL, 0)\n"
                       "    assert candidate(7) == 7\n", "f", "passed"),
    "test_object_to_program": ("def f(node, buf):\n    return node.value + len(buf.getvalue())\n",
                               "import io\nclass Node:\n    value = 3\ndef check(candidate):\n"
                               "    assert candidate(Node(), io.BytesIO(b'ab')) == 5\n", "f", "passed"),
    "test_internals_refused": ("def f(check):\n    return check.__globals__\n",
                               "def check(candidate):\n    candidate(check)\n", "f", "failed"),
    "test_frames_refused": ("def f(gen):\n    return gen.gi_frame\n",
                            "def check(candidate):\n    candidate(x for x in [1])\n", "f", "failed"),
}


def test_tests_call_programs_with_data_handles_and_callbacks():
    programs = [Program(id=name, code=code, test=test, entry_point=entry)
                for name, (code, test, entry, _) in USES.items()]
    results = _run(programs, workers=2)
    for name, (_, _, _, expected) in USES.items():
        r = results[name]
        assert r.status == expected, (name, r.status, r.error, r.stderr[-500:])
    assert "may not get '__globals__' on the test's function" in results["test_internals_refused"].error
    assert "may not get 'gi_frame' on the test's generator" in results["test_frames_refused"].error
