"""Every limit the sandbox applies, in one visible place (written into every results file)."""

from __future__ import annotations

import math

from pydantic import Field, field_validator

from textbooklm.config_base import ADDED_LATER, StrictModel
from textbooklm.sandbox.environment import check_extra


class Limits(StrictModel):
    """Limits of one program run. The effective wall limit of a program is
    ``max(timeout_s, timeout_factor * program.reference_s)``, as evalplus does: a floor for fast
    solutions, and room for problems whose reference solution is itself slow."""

    timeout_s: float = Field(3.0, gt=0, description="Wall-clock limit per program (floor), seconds.")
    timeout_factor: float = Field(
        4.0, gt=0, description="A program with a measured reference runtime gets this multiple of it when larger."
    )
    max_timeout_s: float = Field(60.0, gt=0, description="Hard cap on any program's wall-clock limit, seconds.")
    cpu_s: float | None = Field(
        None, gt=0, description="CPU-time limit (RLIMIT_CPU); default: the wall limit rounded up, plus 1 s."
    )
    memory_mb: int = Field(
        4096, ge=64, le=1 << 22,
        description="Memory limit per program, MiB: its address space (RLIMIT_AS) and, where a memory cgroup "
        "is writable, everything it holds (memfd, shared memory, files in its private /tmp and /dev/shm).",
    )
    tmp_mb: int = Field(
        64, ge=1, le=1 << 20,
        description="Size of each private tmpfs a program gets (/tmp, /var/tmp, /run/lock, /dev/shm), MiB; "
        "emptied after every program.",
        json_schema_extra=ADDED_LATER,
    )
    max_processes: int = Field(
        32, ge=1, description="Processes/threads one program may have (cgroup pids.max, else RLIMIT_NPROC)."
    )
    max_file_mb: int = Field(64, ge=1, description="Largest file a program may write (RLIMIT_FSIZE), MiB.")
    max_output_bytes: int = Field(
        65536, ge=0, description="Captured stdout and stderr are each cut to this many bytes."
    )
    isolate_network: bool = Field(
        True, description="Run programs in a new network namespace (no interfaces up) where the OS permits."
    )
    guard: bool = Field(
        True,
        description="Disable fork/subprocess/os.system/os.kill and file removal or writing outside the work "
        "dir (accident guard, not a security boundary).",
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Extra environment variables for every program (name -> value), on top of the allowlist "
        "(PATH, LANG, LC_ALL, HOME/TMPDIR = the work dir, thread caps). Nothing else of the parent's "
        "environment reaches a program. Written into every results file: never put a secret here.",
    )

    @field_validator("env")
    @classmethod
    def _valid_env(cls, env: dict[str, str]) -> dict[str, str]:
        return check_extra(env)

    def private_tmp_mb(self) -> int:
        """The size of each private tmpfs: ``tmp_mb``, at most a quarter of ``memory_mb``, so that /tmp,
        /var/tmp and /dev/shm full together still fit the program's share of the memory cgroup (their
        pages stay charged after the OOM killer ended the program, until the worker empties them)."""
        return max(1, min(self.tmp_mb, self.memory_mb // 4))

    def wall_limit(self, reference_s: float | None) -> float:
        """The wall-clock limit for a program whose reference solution took ``reference_s`` seconds."""
        limit = self.timeout_s
        if reference_s is not None:
            limit = max(limit, self.timeout_factor * reference_s)
        return min(limit, self.max_timeout_s)

    def cpu_limit(self, wall_s: float) -> int:
        """RLIMIT_CPU is whole seconds; a program may not out-compute its wall limit."""
        return int(math.ceil(self.cpu_s if self.cpu_s is not None else wall_s + 1.0))
