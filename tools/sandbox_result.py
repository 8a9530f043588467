"""What a sandbox run reports: the result type, bounded output capture and the limit that hit."""

from __future__ import annotations

import signal
from dataclasses import dataclass, field

from tools.errors import ToolConfigError
from tools.sandbox_cgroups import RunCgroup

_TRUNCATION_MARKER = "\n[... {n} bytes truncated ...]\n"


class SandboxUnavailable(ToolConfigError):
    """No isolation mechanism works on this machine and unsafe mode was not requested."""


@dataclass
class SandboxResult:
    stdout: str
    stderr: str
    exit_code: int
    duration_s: float
    timed_out: bool = False
    # Which limit stopped the code: "timeout", "cpu", "memory", "output", "file_size",
    # "disk", "processes"; None when it ran to completion on its own.
    limit: str | None = None
    # What isolation applied to this run, e.g. ["bwrap", "uid", "rlimits", "cgroup:memory"].
    isolation: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

def _truncate(data: bytes, limit: int, total: int) -> str:
    """Keep the head and the tail (a traceback is at the end), with a marker for the gap."""
    if total <= limit:
        return data.decode("utf-8", "replace")
    half = max(limit // 2, 1)
    head, tail = data[:half], data[-half:]
    return (
        head.decode("utf-8", "replace")
        + _TRUNCATION_MARKER.format(n=total - len(head) - len(tail))
        + tail.decode("utf-8", "replace")
    )


class _Capture:
    """Bounded capture of one stream: the first bytes and a rolling tail."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        half = max(self.limit // 2, 1)
        room = half - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self.tail += chunk
            if len(self.tail) > half:
                del self.tail[: len(self.tail) - half]

    def text(self) -> str:
        if self.total <= self.limit:
            return (bytes(self.head) + bytes(self.tail)).decode("utf-8", "replace")
        return _truncate(bytes(self.head) + bytes(self.tail), self.limit, self.total)

def _classify(code: int | None, stderr: str, cgroup: RunCgroup) -> str | None:
    """Name the limit that ended a run, from the exit status, cgroup counters and the traceback."""
    if code is None or code == 0:
        return None
    if cgroup.memory_hit() or "MemoryError" in stderr:
        return "memory"
    if code == 128 + signal.SIGXCPU:
        return "cpu"
    if code == 128 + signal.SIGKILL:
        # Nothing else in the sandbox sends SIGKILL: it is the CPU hard limit (or an OOM kill,
        # which the memory check above already named).
        return "cpu"
    if "File too large" in stderr or code == 128 + signal.SIGXFSZ:
        return "file_size"
    if "No space left on device" in stderr:
        return "disk"  # one of the size-limited tmpfs mounts is full
    if cgroup.pids_hit() or "Resource temporarily unavailable" in stderr:
        return "processes"
    return None

