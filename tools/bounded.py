"""Run a parser over hostile input in a forked child, bounded in time and memory.

HTML extraction (lxml, trafilatura) is C code we cannot interrupt from Python: 300,000 unclosed
tags cost 12 s of CPU and 279 MB in-process. A forked child starts in a millisecond with every
module already imported, gets an address-space limit, and is killed at the deadline. Its answer
comes back as JSON, never pickle, so even a child subverted by its input can only send data.
"""

from __future__ import annotations

import json
import math
import os
import resource
import select
import signal
import time
from typing import Any, Callable

__all__ = ["BoundedError", "run_bounded"]


class BoundedError(RuntimeError):
    """The child ran out of time or memory, or failed; the message says which."""


def _vm_size_bytes() -> int:
    try:
        for line in open("/proc/self/status", encoding="ascii"):
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def run_bounded(fn: Callable[..., Any], *args: Any, timeout_s: float, memory_mb: int) -> Any:
    """`fn(*args)` computed in a child process; its result must be JSON data.

    `timeout_s` is CPU time (whole seconds, rounded up, as the kernel counts it), so a busy
    machine does not fail pages that an idle one reads; the wall clock backs it up at four
    times that plus a second, for a child that sleeps or is starved.
    """
    cpu_s = max(1, math.ceil(timeout_s))
    wall_s = 4 * timeout_s + 1
    if not hasattr(os, "fork"):  # no fork (not Linux/macOS): bounded by size caps only
        return fn(*args)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        status = 1
        try:
            os.close(read_end)
            limit = _vm_size_bytes() + memory_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
            try:
                message = {"ok": fn(*args)}
            except MemoryError:
                message = {"error": "memory"}
            except Exception as exc:  # reported to the parent, which raises BoundedError
                message = {"error": f"{type(exc).__name__}: {exc}"[:300]}
            data = json.dumps(message).encode("utf-8")
            view = memoryview(data)
            while view:
                view = view[os.write(write_end, view):]
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    chunks: list[bytes] = []
    deadline = time.monotonic() + wall_s
    status = None
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BoundedError(f"took longer than {wall_s:g} s")
            ready, _, _ = select.select([read_end], [], [], left)
            if not ready:
                continue
            chunk = os.read(read_end, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(read_end)
        if status is None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) in (signal.SIGXCPU, signal.SIGKILL):
        raise BoundedError(f"took longer than {cpu_s} s of CPU time")
    try:
        message = json.loads(b"".join(chunks).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise BoundedError("stopped without an answer (out of memory or crashed)") from None
    if not isinstance(message, dict) or ("ok" not in message and "error" not in message):
        raise BoundedError("answered with something that is not a result")
    if "error" in message:
        raise BoundedError("ran out of memory" if message["error"] == "memory" else str(message["error"]))
    return message["ok"]
