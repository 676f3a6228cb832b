"""What goes into the sandbox (``Program``) and what comes out (``Result``).

Plain dataclasses: thousands cross process boundaries per second, and both are also the
JSONL record format of ``textbooklm sandbox run``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Status = Literal["passed", "failed", "timeout", "memory", "crashed"]
STATUSES: tuple[str, ...] = ("passed", "failed", "timeout", "memory", "crashed")


@dataclass
class Program:
    """One program: ``code`` runs first, then ``test``, then ``check(<entry_point>)`` when an entry
    point is given (the HumanEval convention). With no test it passes when it runs to the end."""

    id: str
    code: str
    test: str = ""
    entry_point: str = ""
    reference_s: float | None = None  # runtime of a reference solution; scales the time limit

    @classmethod
    def from_record(cls, record: dict[str, Any], where: str = "record") -> Program:
        """Build from a JSONL record, naming the record and the reason on bad input."""
        if not isinstance(record, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
        missing = [k for k in ("id", "code") if k not in record]
        if missing:
            raise ValueError(f"{where}: missing key(s) {missing}")
        unknown = set(record) - {"id", "code", "test", "entry_point", "reference_s"}
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}")
        for key in ("code", "test", "entry_point"):
            if key in record and not isinstance(record[key], str):
                raise ValueError(f"{where}: {key!r} must be a string")
        ref = record.get("reference_s")
        if ref is not None and not isinstance(ref, (int, float)):
            raise ValueError(f"{where}: 'reference_s' must be a number")
        return cls(
            id=str(record["id"]),
            code=record["code"],
            test=record.get("test") or "",
            entry_point=record.get("entry_point") or "",
            reference_s=float(ref) if ref is not None else None,
        )


@dataclass
class Result:
    """The verdict on one program.

    status: passed | failed (an exception, e.g. the failing assertion, or sys.exit before the end)
    | timeout (wall or CPU limit) | memory (MemoryError under RLIMIT_AS) | crashed (died without a
    verdict: signal, os._exit, segfault, killed harness).
    """

    id: str
    status: Status
    duration_s: float
    error: str = ""  # one line: the failing assertion / exception, or why it crashed
    traceback: str = ""
    stdout: str = ""
    stderr: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    exit_code: int | None = None  # set when the process exited
    signal: int | None = None  # set when the process was killed by a signal
    wall_limit_s: float = 0.0
    network_isolated: bool = False
    process_limit: str = ""  # what bounds its processes: cgroup-v2 | cgroup-v1 | rlimit-nproc | none
    proc_private: bool = False  # /proc shows only its own PID namespace (no host process)
    env_scrubbed: bool = False  # its environment, and its worker's, hold only the allowlist (+ Limits.env)
    uid: int | None = None  # the uid it ran as (0: root); None when unknown (its worker died)
    private_tmp: bool = False  # /tmp, /var/tmp, /run/lock, /dev/shm were its own size-limited tmpfs, emptied after
    memory_limit: str = ""  # what bounds its memory: cgroup-v2 | cgroup-v1 (all it holds) | rlimit-as (address space)
    fs_view: str = ""  # read-only-root: it saw only the interpreter, its packages and its work dir | none: the host's
    isolation_notes: list[str] = field(default_factory=list)  # why a layer is missing, one note each
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def to_record(self) -> dict[str, Any]:
        return asdict(self)
