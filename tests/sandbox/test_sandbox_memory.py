"""Memory is enforced by the worker's memory cgroup (cgroups.py): what a program holds outside its
address space (memfd files, shared memory, its private tmpfs) counts, the OOM killer's work is
reported as a ``memory`` verdict, and the worker goes on. Before this, RLIMIT_AS alone let a program
hold 896 MB in memfd files under a 256 MB limit (issue 24, item 5)."""

from __future__ import annotations

import pytest

from textbooklm.sandbox import Limits, Program, SandboxPool, cgroups

# memfd files written with write(2): nothing is mapped, so RLIMIT_AS never sees them. Each file stays
# under RLIMIT_FSIZE (64 MiB); together 640 MiB, well past 256 MiB + the worker's allowance.
MEMFD_HOG = """import os
chunk = b'x' * (1 << 20)
fds = []
for i in range(640):
    if i % 32 == 0:
        fds.append(os.memfd_create('hog'))
    os.write(fds[-1], chunk)
print('held', i + 1, 'MiB')
"""
SMALL = "x = bytearray(32 << 20)\nprint(len(x))\n"
ANON_HOG = "x = bytearray(1 << 30)\n"


def test_memfd_beyond_the_limit_is_a_memory_verdict_and_the_worker_goes_on(tmp_path):
    limits = Limits(timeout_s=30, memory_mb=256, guard=False)
    with SandboxPool(limits, workers=1, tmp_root=str(tmp_path)) as pool:
        hog, small, anon = pool.run([Program(id="memfd", code=MEMFD_HOG), Program(id="small", code=SMALL),
                                     Program(id="anon", code=ANON_HOG)])
        isolation = pool.isolation
    if isolation["memory_limit"] == "rlimit-as":
        assert hog.memory_limit == "rlimit-as" and any("memory cgroup" in n for n in hog.isolation_notes)
        pytest.skip(f"no writable memory cgroup here: {hog.isolation_notes}")
    assert hog.memory_limit in ("cgroup-v1", "cgroup-v2") and isolation["memory_cgroup_mb"] == 256 + 128
    assert hog.status == "memory", (hog.status, hog.error, hog.stdout)
    assert "OOM" in hog.error and "held" not in hog.stdout
    assert small.status == "passed", (small.error, small.stderr)  # the same worker, the next program
    assert anon.status == "memory"  # RLIMIT_AS still holds for plain allocations (MemoryError)


def test_memory_cgroup_limit_and_oom_counter(tmp_path):
    group, why = cgroups.create_memory(f"{cgroups.PREFIX}{__import__('os').getpid()}-memtest", 100)
    if group is None:
        pytest.skip(f"no writable memory cgroup here: {why}")
    try:
        limit_file = "memory.max" if group.kind == "cgroup-v2" else "memory.limit_in_bytes"
        assert int(open(f"{group.path}/{limit_file}").read()) == 100 << 20
        assert cgroups.oom_kills(group) == 0
        assert group.path in cgroups.ours(f"{cgroups.PREFIX}{__import__('os').getpid()}-")
    finally:
        assert cgroups.remove(group.path)
