"""The environment of sandboxed code: built from an allowlist, never copied from the parent.

Why: the parent process holds secrets in its environment (``OPENAI_API_KEY`` and whatever else a
user exported). A program that prints ``os.environ`` would copy them into training data and logs,
and a program can also read ``/proc/<pid>/environ`` of its parent worker: the environment a
process was *exec'd* with stays readable there even after ``os.environ`` is cleared. So the
warm workers are started with this allowlist already (``worker_environment``), and each program
gets a fresh one on top (``program_environment``): nothing of the parent's reaches either,
except the names below and what ``Limits.env`` names explicitly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# Taken from the parent when set (they carry no secrets and programs expect them).
FROM_PARENT = ("PATH", "LANG", "LC_ALL")
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
DEFAULT_LANG = "C.UTF-8"
# Numerical libraries otherwise start one thread per core in every program.
THREAD_CAPS = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# A fixed hash seed: a printed set or dict-of-sets comes out in the same order on every run. The worker
# is exec'd with it (a forked program keeps its interpreter's seed); programs get it for any Python they start.
HASH_SEED = {"PYTHONHASHSEED": "0"}
# The worker's own needs: find the package, never read a user site dir (HOME is a shared tmp dir).
WORKER_ONLY = ("PYTHONPATH", "PYTHONNOUSERSITE", "PYTHONDONTWRITEBYTECODE", "HOME", "TMPDIR")

NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _from_parent(parent: Mapping[str, str]) -> dict[str, str]:
    env = {"PATH": parent.get("PATH") or DEFAULT_PATH, "LANG": parent.get("LANG") or DEFAULT_LANG}
    if parent.get("LC_ALL"):
        env["LC_ALL"] = parent["LC_ALL"]
    return env


def worker_environment(parent: Mapping[str, str], home: str, pythonpath: str) -> dict[str, str]:
    """What a warm worker is exec'd with (and so what its ``/proc/PID/environ`` shows)."""
    return {**_from_parent(parent), **THREAD_CAPS, **HASH_SEED, "HOME": home, "TMPDIR": home,
            "PYTHONPATH": pythonpath,
            "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1"}


def worker_names() -> set[str]:
    """Every name a worker's environment may hold (checked by the worker at start)."""
    return set(FROM_PARENT) | set(THREAD_CAPS) | set(HASH_SEED) | set(WORKER_ONLY)


def program_environment(worker_env: Mapping[str, str], workdir: str, extra: Mapping[str, str]) -> dict[str, str]:
    """The whole ``os.environ`` of one program: PATH/LANG/LC_ALL, the thread caps, PYTHONHASHSEED, HOME and the
    temp dir variables pointing at its work dir, then ``extra`` (``Limits.env``), which wins."""
    env = {**_from_parent(worker_env), **THREAD_CAPS, **HASH_SEED, "HOME": workdir, "TMPDIR": workdir,
           "TMP": workdir,
           "TEMP": workdir, "PYTHONDONTWRITEBYTECODE": "1"}
    env.update(extra)
    return env


def check_extra(env: Mapping[str, str]) -> dict[str, str]:
    """Validate ``Limits.env``: names are shell-style identifiers, values have no NUL byte."""
    for name, value in env.items():
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise ValueError(f"env: {name!r} is not a valid variable name ([A-Za-z_][A-Za-z0-9_]*)")
        if not isinstance(value, str) or "\0" in value:
            raise ValueError(f"env: the value of {name} must be a string without NUL bytes")
    return dict(env)
