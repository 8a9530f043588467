"""Run model-written Python in a separate, OS-isolated process.

Isolation is layered so that the failure of one layer does not open the host:

- bubblewrap namespaces: no network, a private PID namespace (the code cannot see or signal the
  agent), a read-only view of /usr (interpreter and standard library) and nothing else of the
  host: no /etc, no home directories, no project files. The only writable place is a fresh
  work directory, mounted at /work (and /tmp).
- An unprivileged user. When evolve runs as root, the child drops to a high, unused uid before
  bubblewrap starts, because the kernel ignores RLIMIT_NPROC for root and a uid mapped back to
  root inside a user namespace would inherit that exemption.
- rlimits: CPU seconds, address space, file size, open files, processes.
- A memory (and pids) cgroup nested under evolve's own cgroup, when the host lets us create one.
- A wall-clock deadline after which the whole process group is killed; killing bubblewrap's
  monitor takes the PID namespace, and every process in it, down with it.

Without bubblewrap the sandbox refuses to run unless `allow_unsafe` is set explicitly.
"""

from __future__ import annotations

import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

from tools.sandbox_bwrap import (  # noqa: F401  (names kept importable from here)
    _FILTER,
    _PROBE_LOCK,
    _PROBED,
    _UID_BASE,
    _UID_SPAN,
    BwrapCommand,
    _bwrap_path,
    _bwrap_supports,
    _count_processes,
    _pick_interpreter,
    _world_accessible,
)
from tools.sandbox_cgroups import Cgroups
from tools.sandbox_process import _DRAIN_FACTOR, ProcessRunner, _close_all, _kill_group  # noqa: F401
from tools.sandbox_result import (  # noqa: F401
    _TRUNCATION_MARKER,
    SandboxResult,
    SandboxUnavailable,
    _Capture,
    _classify,
    _truncate,
)
from tools.settings import SandboxSettings, sandbox_environment

__all__ = ["Sandbox", "SandboxResult", "SandboxUnavailable", "isolation_report"]


class Sandbox(BwrapCommand, ProcessRunner):
    """Runs Python code in an isolated child process; see the module docstring for the layers."""

    def __init__(self, settings: SandboxSettings | None = None) -> None:
        self.settings = settings or SandboxSettings()
        self._bwrap = _bwrap_path()
        self.mode = "bwrap"
        if self._bwrap is None or not self._bwrap_works():
            if not self.settings.allow_unsafe:
                reason = (
                    "bubblewrap (bwrap) is not installed"
                    if self._bwrap is None
                    else f"bubblewrap cannot create namespaces here ({_PROBED.get('bwrap_error', '')})"
                )
                raise SandboxUnavailable(
                    f"the Python sandbox needs OS isolation but {reason}; "
                    "install it with `apt-get install bubblewrap`, or run model code without "
                    "isolation by setting EVOLVE_SANDBOX__ALLOW_UNSAFE=true (unsafe)"
                )
            self.mode = "unsafe"
        self._is_root = os.geteuid() == 0
        self._drop_uid = self._is_root
        if self.mode == "bwrap":
            self._python, self._extra_ro = _pick_interpreter()
        else:
            self._extra_ro = []
            try:
                self._python = _pick_interpreter()[0]
            except SandboxUnavailable:
                # Unsafe mode already means "trust the code"; run it as ourselves rather than not at all.
                self._python, self._drop_uid = sys.executable, False
        self._cgroups = self._shared("cgroups", Cgroups)

    def run(
        self,
        code: str,
        *,
        stdin: str = "",
        timeout_s: float | None = None,
        files: dict[str, str] | None = None,
        give_fds: tuple[int, ...] = (),
    ) -> SandboxResult:
        """Run `code` as a Python script in a fresh work directory and report what happened.

        `give_fds` are moved into the run: the code inherits them under the same numbers and
        this process closes its copies once the child has started (or failed to start).
        """
        pending = list(give_fds)  # emptied once closed, so no number is closed twice
        try:
            return self._run(code, stdin, timeout_s, files, pending)
        finally:
            _close_all(pending)

    def _run(self, code, stdin, timeout_s, files, give_fds: list[int]) -> SandboxResult:
        timeout = self.settings.timeout_s if timeout_s is None else timeout_s
        uid = _UID_BASE + random.randrange(_UID_SPAN)
        workdir = tempfile.mkdtemp(prefix="evolve-sbx-")
        cgroup = self._cgroups.create(self.settings.memory_mb * 1024 * 1024, self.settings.max_procs)
        isolation = ["bwrap", "rlimits"] if self.mode == "bwrap" else ["none", "rlimits"]
        if self._drop_uid:
            isolation.append("uid")
        isolation += [f"cgroup:{c}" for c in cgroup.controllers]
        if self.mode == "bwrap":
            isolation += ["seccomp"] if _FILTER else []
            isolation += ["no-userns"] if self._userns_off() else []
            isolation += ["tmpfs-limits"]
        try:
            self._populate(workdir, code, files or {}, uid)
            script = "/work/main.py" if self.mode == "bwrap" else os.path.join(workdir, "main.py")
            # -I: ignore PYTHON* variables and the user site; -S: skip site (faster start-up);
            # -B: the work dir need not fill with bytecode caches.
            py = [self._python, "-I", "-S", "-B", script]
            if self.mode == "bwrap":
                argv = [*self._bwrap_argv(self._open_files(workdir, give_fds), self._seccomp_fd(give_fds)), "--", *py]
            else:
                argv = py
            env = sandbox_environment()
            env.update({"HOME": "/work" if self.mode == "bwrap" else workdir, "TMPDIR": "/tmp" if self.mode == "bwrap" else workdir, "PYTHONIOENCODING": "utf-8"})
            return self._execute(argv, env, stdin, timeout, uid, cgroup, isolation, workdir, give_fds)
        finally:
            cgroup.destroy()
            shutil.rmtree(workdir, ignore_errors=True)

    @staticmethod
    def _open_files(workdir: str, passed: list[int]) -> list[tuple[int, str]]:
        """Read-only descriptors of the populated files, for bwrap to copy into /work."""
        root = Path(workdir)
        out = []
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            fd = os.open(path, os.O_RDONLY)
            passed.append(fd)
            out.append((fd, path.relative_to(root).as_posix()))
        return out

    @staticmethod
    def _seccomp_fd(passed: list[int]) -> int | None:
        if _FILTER is None:
            return None
        read_end, write_end = os.pipe()
        try:
            os.write(write_end, _FILTER)  # a few hundred bytes: fits the pipe buffer
        finally:
            os.close(write_end)
        passed.append(read_end)
        return read_end

    def _populate(self, workdir: str, code: str, files: dict[str, str], uid: int) -> None:
        root = Path(workdir).resolve()
        for name, content in {**files, "main.py": code}.items():
            target = (root / name).resolve()
            if root not in target.parents:
                raise ValueError(f"sandbox file name {name!r} escapes the work directory; use a relative path")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content, encoding="utf-8")
        if self._drop_uid:
            for dirpath, dirnames, filenames in os.walk(root):
                os.chown(dirpath, uid, uid)
                for fname in filenames:
                    os.chown(os.path.join(dirpath, fname), uid, uid)
        os.chmod(root, 0o700)


def isolation_report(settings: SandboxSettings | None = None) -> str:
    """One line saying which isolation layers apply here, for set-up output and docs."""
    try:
        box = Sandbox(settings)
    except SandboxUnavailable as exc:
        return f"unavailable: {exc}"
    layers = ["bwrap namespaces (no network, private PID, read-only /usr)"] if box.mode == "bwrap" else ["NO isolation (unsafe mode)"]
    if box.mode == "bwrap":
        layers.append("seccomp filter" if _FILTER else f"no seccomp filter on {os.uname().machine}")
        layers.append("no nested user namespaces" if box._userns_off() else "nested user namespaces possible (bubblewrap < 0.8 or no user namespace)")
        st = box.settings
        layers.append(f"tmpfs /work {st.work_mb} MB, /tmp {st.tmp_mb} MB, /dev/shm {st.shm_mb} MB, read-only /dev")
    if box._drop_uid:
        layers.append("unprivileged uid")
    layers.append("rlimits (cpu, address space, file size, open files, processes)")
    usable = sorted(box._cgroups.usable)
    layers.append(f"cgroups: {', '.join(usable)}" if usable else "cgroups: none available")
    return "; ".join(layers)
