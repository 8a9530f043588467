"""Per-run cgroups for the sandbox: memory and pids limits nested under evolve's own cgroup,
on cgroup v1 or v2, for whichever controllers the host lets us create."""

from __future__ import annotations

import os
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path


class Cgroups:
    """Per-run cgroups nested under our own, on cgroup v1 or v2, for whatever is permitted."""

    def __init__(self) -> None:
        self.usable: dict[str, Path] = {}  # controller -> parent directory we may create in
        self._v2 = False
        try:
            lines = Path("/proc/self/cgroup").read_text().splitlines()
        except OSError:
            return
        root = Path("/sys/fs/cgroup")
        for line in lines:
            _, controllers, rel = line.split(":", 2)
            rel = rel.lstrip("/")
            if controllers == "":
                base = root / rel if (root / "cgroup.controllers").exists() else root / "unified" / rel
                self._probe_v2(base)
                continue
            for ctrl in controllers.split(","):
                if ctrl in ("memory", "pids") and ctrl not in self.usable:
                    self._probe(ctrl, root / ctrl / rel, f"{'memory.limit_in_bytes' if ctrl == 'memory' else 'pids.max'}")

    def _probe(self, ctrl: str, base: Path, limit_file: str) -> None:
        probe = base / f"evolve-probe-{os.getpid()}-{random.randrange(1 << 30)}"
        try:
            probe.mkdir()
        except OSError:
            return
        try:
            if (probe / limit_file).exists() and os.access(probe / "cgroup.procs", os.W_OK):
                self.usable[ctrl] = base
        finally:
            try:
                probe.rmdir()
            except OSError:
                pass

    def _probe_v2(self, base: Path) -> None:
        probe = base / f"evolve-probe-{os.getpid()}-{random.randrange(1 << 30)}"
        try:
            probe.mkdir()
        except OSError:
            return
        try:
            for ctrl, limit_file in (("memory", "memory.max"), ("pids", "pids.max")):
                if ctrl not in self.usable and (probe / limit_file).exists():
                    self.usable[ctrl] = base
                    self._v2 = True
        finally:
            try:
                probe.rmdir()
            except OSError:
                pass

    def create(self, memory_bytes: int, max_procs: int) -> "RunCgroup":
        run = RunCgroup(self._v2)
        name = f"evolve-sbx-{os.getpid()}-{random.randrange(1 << 40)}"
        for ctrl, base in self.usable.items():
            path = base / name
            if path in run.dirs:
                continue
            try:
                path.mkdir()
                if ctrl == "memory":
                    limit_file = "memory.max" if self._v2 else "memory.limit_in_bytes"
                    (path / limit_file).write_text(str(memory_bytes))
                    if self._v2 and (path / "memory.swap.max").exists():
                        (path / "memory.swap.max").write_text("0")
                else:
                    (path / "pids.max").write_text(str(max_procs))
            except OSError:
                try:
                    path.rmdir()
                except OSError:
                    pass
                continue
            run.dirs.append(path)
            run.controllers.append(ctrl)
        return run


@dataclass
class RunCgroup:
    v2: bool
    dirs: list[Path] = field(default_factory=list)
    controllers: list[str] = field(default_factory=list)

    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs]

    def memory_hit(self) -> bool:
        for d, ctrl in zip(self.dirs, self.controllers):
            if ctrl != "memory":
                continue
            try:
                if self.v2:
                    events = dict(line.split() for line in (d / "memory.events").read_text().splitlines())
                    return int(events.get("oom_kill", 0)) > 0 or int(events.get("max", 0)) > 0
                return int((d / "memory.failcnt").read_text()) > 0
            except (OSError, ValueError):
                return False
        return False

    def pids_hit(self) -> bool:
        for d, ctrl in zip(self.dirs, self.controllers):
            if ctrl != "pids":
                continue
            try:
                if self.v2:
                    events = dict(line.split() for line in (d / "pids.events").read_text().splitlines())
                    return int(events.get("max", 0)) > 0
                return int((d / "pids.events").read_text().split()[1]) > 0
            except (OSError, ValueError, IndexError):
                return False
        return False

    def destroy(self) -> None:
        """Remove the cgroups, waiting (bounded) while the dying namespace still holds them.

        Synchronous on purpose: a background thread dies with a one-shot `evolve tool python`
        and left its cgroups behind about one time in three.
        """
        if not self.dirs:
            return
        pending = []
        for d in self.dirs:
            try:
                d.rmdir()
            except OSError:
                pending.append(d)
        if pending:
            self.dirs = pending
            self._reap()

    def _reap(self) -> None:
        for d in self.dirs:
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except OSError:
                    try:
                        for pid in (d / "cgroup.procs").read_text().split():
                            try:
                                os.kill(int(pid), signal.SIGKILL)
                            except (ProcessLookupError, ValueError):
                                pass
                    except OSError:
                        break
                    time.sleep(0.01)
