"""Run untrusted (model-written) Python with time, memory, process, file and network limits.

Used by every stage that executes model output: exercise verification (synth), textbook code
blocks, GSM8K-through-code, and HumanEval/MBPP scoring (evals).

Library API::

    from textbooklm.sandbox import Limits, Program, SandboxPool, run_program, run_programs

    results = run_programs([Program(id="a", code=src, test=test, entry_point="f")],
                           Limits(timeout_s=3, memory_mb=4096), workers=None)   # None: every core
    r = results[0]
    r.status      # "passed" | "failed" | "timeout" | "memory" | "crashed"
    r.error       # e.g. "AssertionError at test line 5: assert candidate(2) == 4"
    r.duration_s, r.stdout, r.stderr, r.network_isolated, r.process_limit, r.proc_private, r.uid

    with SandboxPool(limits, workers=4) as pool:   # keep workers warm across batches
        pool.run(batch1); pool.run(batch2)

A program is ``code``, then ``test``, then ``check(entry_point)`` when an entry point is given
(HumanEval's convention); with no test it passes when it runs to the end. ``Program.reference_s``
(a reference solution's runtime) raises the wall limit to ``Limits.timeout_factor`` times it.

How: each worker is a warm Python process (zygote.py) with a pristine fork server (forkserver.py)
that forks two processes per program (child.py): the program's, which never sees the test, and the
test's, another uid out of the program's reach, which calls the program with arguments and results
passed as data (call_proxy.py, wire.py) and alone reports the verdict. Each gets a new session,
stdin from /dev/null, capped stdout/stderr pipes, a fresh work dir (removed afterwards),
RLIMIT_AS/CPU/FSIZE/CORE, an environment built from an allowlist (environment.py: PATH, LANG/LC_ALL,
HOME/TMPDIR = the work dir, thread caps, ``Limits.env``; the worker itself is exec'd with the
allowlist, so no parent secret is in any environ a program can read), an unprivileged uid when run
as root, no capabilities and no_new_privs, and an accident guard (guard.py). Its processes are
bounded by the worker's cgroup pids controller, which binds root too (cgroups.py; RLIMIT_NPROC where
no pids cgroup is writable); ``Result.process_limit`` says which. Workers live in their own network
namespace (no network), PID namespace (every leftover process is killed after each program) and
mount namespace (mounts.py: a /proc of the PID namespace only, and directories the drop uid cannot
traverse, e.g. /root holding the interpreter, masked by a tmpfs with what Python needs bound back
read-only) where the OS permits (namespaces.py).
``Result.network_isolated/proc_private/env_scrubbed/uid/isolation_notes`` and
``SandboxPool.isolation`` say what was achieved, and why not where a layer is missing.

What it is not: a security boundary against a determined attacker (kernel bugs, world-readable
files, the guard is bypassable with ctypes). It contains accidents, runaway programs and casual
snooping; run untrusted code at scale inside a container or VM.
"""

from textbooklm.sandbox.config import Limits
from textbooklm.sandbox.pool import SandboxPool, run_program, run_programs
from textbooklm.sandbox.program import STATUSES, Program, Result, Status

__all__ = ["Limits", "Program", "Result", "Status", "STATUSES", "SandboxPool", "run_program", "run_programs"]
