"""Building the isolation: bubblewrap's mounts and arguments, the probes, the uid and rlimits.

`BwrapCommand` holds the Sandbox methods that decide how the child is started; `Sandbox`
(tools/sandbox.py) mixes it in and provides `settings`, `_bwrap`, `_extra_ro`, `_is_root`.
"""

from __future__ import annotations

import os
import resource
import shutil
import stat
import subprocess
import sys
import threading
from pathlib import Path

from tools.sandbox_result import SandboxUnavailable
from tools.seccomp import build_filter
from tools.settings import sandbox_environment

# Sandboxed code runs as a uid from this range: no account owns it, so it can read nothing
# that is not world-readable, and a per-run uid keeps one run's process count (RLIMIT_NPROC
# is per user) from starving a concurrent run.
_UID_BASE = 1_900_000
_UID_SPAN = 60_000


def _world_accessible(path: Path, *, need_exec: bool = True) -> bool:
    """Whether an unprivileged stranger can reach (and execute) `path` through every parent."""
    try:
        path = path.resolve()
        for parent in reversed(path.parents):
            if not parent.stat().st_mode & stat.S_IXOTH:
                return False
        mode = path.stat().st_mode
    except OSError:
        return False
    return bool(mode & stat.S_IROTH) and (not need_exec or bool(mode & stat.S_IXOTH))


def _pick_interpreter() -> tuple[str, list[str]]:
    """The interpreter to run inside, and extra host directories it needs bound read-only.

    The agent's own interpreter is preferred so code sees the same Python version, but only if
    an unprivileged user can read it (a pyenv install under /root cannot be).
    """
    own = Path(sys.executable).resolve()
    prefix = Path(sys.base_prefix).resolve()
    if _world_accessible(own):
        extra = [] if str(prefix).startswith("/usr/") or prefix == Path("/usr") else [str(prefix)]
        if all(_world_accessible(Path(p), need_exec=True) for p in extra):
            return str(own), extra
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        path = Path(candidate)
        if path.exists() and _world_accessible(path):
            return str(path.resolve()), []
    raise SandboxUnavailable(
        "no Python interpreter readable by an unprivileged user was found for the sandbox; "
        "install one (apt-get install python3) or set EVOLVE_SANDBOX__ALLOW_UNSAFE=true"
    )


_PROBE_LOCK = threading.Lock()
_PROBED: dict[str, object] = {}


_FILTER = build_filter()


def _bwrap_supports(option: str) -> bool:
    """Whether the installed bubblewrap knows `option` (--disable-userns needs 0.8)."""
    key = f"bwrap-option{option}"
    with _PROBE_LOCK:
        if key not in _PROBED:
            try:
                done = subprocess.run([_bwrap_path() or "bwrap", "--help"], capture_output=True, text=True, timeout=10)
                _PROBED[key] = option in done.stdout + done.stderr
            except (OSError, subprocess.SubprocessError):
                _PROBED[key] = False
        return bool(_PROBED[key])


def _bwrap_path() -> str | None:
    return shutil.which("bwrap", path="/usr/local/bin:/usr/bin:/bin")


class BwrapCommand:
    """The command-building half of `Sandbox`: probes, bubblewrap argv, privilege drop."""

    @staticmethod
    def _shared(key: str, factory):
        with _PROBE_LOCK:
            if key not in _PROBED:
                _PROBED[key] = factory()
            return _PROBED[key]

    def _bwrap_works(self) -> bool:
        def probe() -> bool:
            # Probe as the user the real runs use, since that decides whether user namespaces work.
            argv = [self._bwrap, *self._mounts_for_probe(), "--", "/bin/sh", "-c", "exit 0"] if self._bwrap else []
            try:
                done = subprocess.run(
                    argv,
                    capture_output=True,
                    timeout=10,
                    env=sandbox_environment(),
                    preexec_fn=self._drop_privileges_fn(_UID_BASE) if os.geteuid() == 0 else None,
                )
            except (OSError, subprocess.SubprocessError) as exc:
                _PROBED["bwrap_error"] = str(exc)
                return False
            if done.returncode != 0:
                _PROBED["bwrap_error"] = done.stderr.decode("utf-8", "replace").strip()[:300]
            return done.returncode == 0

        return bool(self._shared("bwrap_ok", probe))

    def _userns_off(self) -> bool:
        """Whether runs can forbid nested user namespaces: bubblewrap knows --disable-userns
        (0.8+) and it works here (it needs a user namespace of its own, which a setuid
        bubblewrap does not make)."""

        known = _bwrap_supports("--disable-userns")  # outside _shared: both take the probe lock

        def probe() -> bool:
            if not known:
                return False
            argv = [self._bwrap, *self._mounts_for_probe(), "--unshare-user", "--disable-userns", "--", "/bin/sh", "-c", "exit 0"]
            try:
                done = subprocess.run(argv, capture_output=True, timeout=10, env=sandbox_environment(),
                                      preexec_fn=self._drop_privileges_fn(_UID_BASE) if os.geteuid() == 0 else None)
            except (OSError, subprocess.SubprocessError):
                return False
            return done.returncode == 0

        return bool(self._shared("userns_off", probe))

    @staticmethod
    def _host_dirs() -> list[str]:
        """Mirror the top-level system directories (symlinks on merged-/usr systems)."""
        args: list[str] = ["--ro-bind", "/usr", "/usr"]
        for name in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
            if os.path.islink(name):
                args += ["--symlink", os.readlink(name), name]
            elif os.path.isdir(name):
                args += ["--ro-bind", name, name]
        return args

    def _mounts_for_probe(self) -> list[str]:
        return [*self._host_dirs(), "--proc", "/proc", "--dev", "/dev", "--unshare-all", "--die-with-parent"]

    def _bwrap_argv(self, files: list[tuple[int, str]], seccomp_fd: int | None) -> list[str]:
        """bubblewrap's arguments: `files` are (readable fd, path under /work) copied in."""
        st = self.settings
        argv = [self._bwrap, *self._host_dirs()]
        for extra in self._extra_ro:
            argv += ["--ro-bind", extra, extra]
        argv += [
            "--proc", "/proc",
            # /dev holds the device nodes; it is read-only, so only the small /dev/shm can
            # be filled (bwrap sizes a --dev tmpfs at half the RAM and cannot limit it).
            "--dev", "/dev",
            "--size", str(st.shm_mb * 1024 * 1024), "--tmpfs", "/dev/shm",
            "--remount-ro", "/dev",
            "--size", str(st.work_mb * 1024 * 1024), "--tmpfs", "/work",
            "--size", str(st.tmp_mb * 1024 * 1024), "--tmpfs", "/tmp",
        ]
        for fd, name in files:
            argv += ["--file", str(fd), f"/work/{name}"]
        argv += [
            "--chdir", "/work",
            "--unshare-all",
            "--hostname", "sandbox",
            "--die-with-parent",
            "--new-session",
            "--remount-ro", "/",
        ]
        if self._userns_off():
            # No nested user namespace: inside one, code would be "root" with every capability.
            argv += ["--unshare-user", "--disable-userns"]
        if seccomp_fd is not None:
            argv += ["--seccomp", str(seccomp_fd)]
        if self._is_root:
            argv += ["--cap-drop", "ALL"]
        return argv

    def _drop_privileges_fn(self, uid: int, cgroup_procs: list[str] | None = None, limits: bool = False):
        settings = self.settings
        drop = os.geteuid() == 0 and getattr(self, "_drop_uid", True)

        def preexec() -> None:
            # Join the cgroups first: writing cgroup.procs needs the privileges we drop below.
            for procs in cgroup_procs or []:
                with open(procs, "w") as fh:
                    fh.write(str(os.getpid()))
            if limits:
                mem = settings.memory_mb * 1024 * 1024
                file_bytes = settings.max_file_mb * 1024 * 1024
                resource.setrlimit(resource.RLIMIT_CPU, (settings.cpu_s, settings.cpu_s + 1))
                resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
                resource.setrlimit(resource.RLIMIT_FSIZE, (file_bytes, file_bytes))
                resource.setrlimit(resource.RLIMIT_NOFILE, (settings.max_open_files, settings.max_open_files))
                resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
                nproc = settings.max_procs
                if os.geteuid() != 0:
                    # Not root: the count is shared with every process this user already has.
                    nproc += _count_processes(os.getuid())
                resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
            if drop:
                os.setgroups([])
                os.setresgid(uid, uid, uid)
                os.setresuid(uid, uid, uid)

        return preexec

def _count_processes(uid: int) -> int:
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    count += 1
            except OSError:
                pass
    return count

