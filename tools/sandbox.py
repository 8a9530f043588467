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
import resource
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tools.errors import ToolConfigError
from tools.seccomp import build_filter
from tools.settings import SandboxSettings, sandbox_environment

__all__ = ["Sandbox", "SandboxResult", "SandboxUnavailable", "isolation_report"]

# Sandboxed code runs as a uid from this range: no account owns it, so it can read nothing
# that is not world-readable, and a per-run uid keeps one run's process count (RLIMIT_NPROC
# is per user) from starving a concurrent run.
_UID_BASE = 1_900_000
_UID_SPAN = 60_000

_TRUNCATION_MARKER = "\n[... {n} bytes truncated ...]\n"
# Output beyond this multiple of the cap is not worth waiting for: the process is stopped.
_DRAIN_FACTOR = 8


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


class _Cgroups:
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

    def create(self, memory_bytes: int, max_procs: int) -> "_RunCgroup":
        run = _RunCgroup(self._v2)
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
class _RunCgroup:
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


class Sandbox:
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
        self._cgroups = self._shared("cgroups", _Cgroups)

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
        if _bwrap_supports("--disable-userns"):
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
            isolation += ["no-userns"] if _bwrap_supports("--disable-userns") else []
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

    def _execute(self, argv, env, stdin, timeout, uid, cgroup, isolation, workdir, give_fds: list[int]) -> SandboxResult:
        cap = self.settings.max_output_bytes
        out, err = _Capture(cap), _Capture(cap)
        start = time.monotonic()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=workdir,
            start_new_session=True,
            pass_fds=tuple(give_fds),
            preexec_fn=self._drop_privileges_fn(uid, cgroup.procs_files(), limits=True),
        )
        # The child has its copies; ours would keep the other end from seeing end-of-file.
        _close_all(give_fds)
        limit: str | None = None
        timed_out = False
        sel = selectors.DefaultSelector()
        try:
            self._feed_stdin(proc, stdin)
            sel.register(proc.stdout, selectors.EVENT_READ, out)
            sel.register(proc.stderr, selectors.EVENT_READ, err)
            deadline = start + timeout
            open_streams = 2
            while open_streams:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    timed_out, limit = True, "timeout"
                    break
                for key, _ in sel.select(min(remaining, 0.5)):
                    chunk = os.read(key.fd, 65536)
                    if not chunk:
                        sel.unregister(key.fileobj)
                        open_streams -= 1
                        continue
                    key.data.feed(chunk)
                if out.total + err.total > _DRAIN_FACTOR * cap:
                    limit = "output"
                    break
            if limit is not None:
                _kill_group(proc)
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0) + 1)
            except subprocess.TimeoutExpired:
                # Streams closed but the process lingers (e.g. it closed its own stdout).
                timed_out, limit = True, "timeout"
                _kill_group(proc)
                proc.wait()
        finally:
            sel.close()
            if proc.poll() is None:
                _kill_group(proc)
                proc.wait()
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                try:
                    if stream:
                        stream.close()
                except OSError:
                    pass
        duration = time.monotonic() - start
        code = proc.returncode
        # bwrap reports a signal death as 128+N; a direct child reports it as -N.
        if code is not None and code < 0:
            code = 128 - code
        stderr_text = err.text()
        overflow = out.total > cap or err.total > cap
        if limit is None:
            limit = _classify(code, stderr_text, cgroup)
        if limit is None and overflow:
            limit = "output"
        if limit == "output":
            stderr_text += f"\n[sandbox: output truncated to {cap} bytes per stream]"
        elif limit is not None:
            stderr_text += f"\n[sandbox: stopped by the {limit} limit]"
        return SandboxResult(
            stdout=out.text(),
            stderr=stderr_text,
            exit_code=code if code is not None else -1,
            duration_s=duration,
            timed_out=timed_out,
            limit=limit,
            isolation=isolation,
        )

    @staticmethod
    def _feed_stdin(proc: subprocess.Popen, stdin: str) -> None:
        data = stdin.encode("utf-8")
        if not data:
            proc.stdin.close()
            return

        def writer() -> None:
            # A thread, so a child that never reads its input cannot block us past the deadline.
            try:
                proc.stdin.write(data)
            except (BrokenPipeError, OSError, ValueError):
                pass
            finally:
                try:
                    proc.stdin.close()
                except OSError:
                    pass

        threading.Thread(target=writer, daemon=True).start()


def _classify(code: int | None, stderr: str, cgroup: _RunCgroup) -> str | None:
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


def _close_all(fds: list[int]) -> None:
    while fds:
        try:
            os.close(fds.pop())
        except OSError:
            pass


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.kill()
    except ProcessLookupError:
        pass


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


def isolation_report(settings: SandboxSettings | None = None) -> str:
    """One line saying which isolation layers apply here, for set-up output and docs."""
    try:
        box = Sandbox(settings)
    except SandboxUnavailable as exc:
        return f"unavailable: {exc}"
    layers = ["bwrap namespaces (no network, private PID, read-only /usr)"] if box.mode == "bwrap" else ["NO isolation (unsafe mode)"]
    if box.mode == "bwrap":
        layers.append("seccomp filter" if _FILTER else f"no seccomp filter on {os.uname().machine}")
        layers.append("no nested user namespaces" if _bwrap_supports("--disable-userns") else "nested user namespaces possible (bubblewrap < 0.8)")
        st = box.settings
        layers.append(f"tmpfs /work {st.work_mb} MB, /tmp {st.tmp_mb} MB, /dev/shm {st.shm_mb} MB, read-only /dev")
    if box._drop_uid:
        layers.append("unprivileged uid")
    layers.append("rlimits (cpu, address space, file size, open files, processes)")
    usable = sorted(box._cgroups.usable)
    layers.append(f"cgroups: {', '.join(usable)}" if usable else "cgroups: none available")
    return "; ".join(layers)
