"""The Python sandbox: results, limits, and a table of escape attempts that must stay contained.

The escape table is kept forever: add rows, never remove them. Every row checks that the attack
failed *and* that the sandbox still runs code afterwards.
"""

from __future__ import annotations

import os
import socket
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from agent.config import SandboxSettings
from tools import sandbox as sandbox_mod
from tools.registry import main_python
from tools.sandbox import Sandbox, SandboxResult, SandboxUnavailable
from tests.security_env import missing

try:
    _PROBE = Sandbox(SandboxSettings())
    _SKIP = ""
except SandboxUnavailable as exc:  # only when bubblewrap cannot run at all on this machine
    _PROBE = None
    _SKIP = f"bubblewrap cannot run here: {exc}"



@pytest.fixture()
def _require_bwrap() -> None:
    if _PROBE is None:
        missing(_SKIP)  # fails in CI, skips only with EVOLVE_TEST_ALLOW_SKIP=1 locally


needs_bwrap = pytest.mark.usefixtures("_require_bwrap")

LIMITS = SandboxSettings(timeout_s=4, cpu_s=1, memory_mb=256, max_file_mb=1, max_output_bytes=2000, max_procs=16,
                         work_mb=8, tmp_mb=8, shm_mb=4)


@pytest.fixture(scope="module")
def box() -> Sandbox:
    if _PROBE is None:
        missing(_SKIP)
    return Sandbox(LIMITS)


def assert_usable(box: Sandbox) -> None:
    after = box.run("print('still usable')")
    assert after.ok and after.stdout == "still usable\n", after


# -- ordinary behaviour -------------------------------------------------------------------------


@needs_bwrap
def test_runs_code_and_reports(box: Sandbox) -> None:
    result = box.run("import sys\nprint('hi')\nprint('err', file=sys.stderr)\nsys.exit(3)")
    assert result.stdout == "hi\n"
    assert result.stderr == "err\n"
    assert result.exit_code == 3 and not result.ok and not result.timed_out and result.limit is None
    assert 0 < result.duration_s < 4
    assert "bwrap" in result.isolation and "rlimits" in result.isolation


@needs_bwrap
def test_stdin_and_files(box: Sandbox) -> None:
    code = "import sys\nprint(open('data/in.txt').read().strip(), sys.stdin.read().upper())"
    result = box.run(code, stdin="abc", files={"data/in.txt": "from a file\n"})
    assert result.ok and result.stdout == "from a file ABC\n"


@needs_bwrap
def test_solution_plus_tests_pattern(box: Sandbox) -> None:
    solution = "def add(a, b):\n    return a + b\n"
    tests = "assert add(2, 3) == 5\nassert add(-1, 1) == 0\nprint('passed')\n"
    assert box.run(solution + "\n" + tests).stdout == "passed\n"
    failing = box.run(solution + "\n" + "assert add(2, 2) == 5\n")
    assert not failing.ok and "AssertionError" in failing.stderr


@needs_bwrap
def test_file_names_cannot_escape_the_work_dir(box: Sandbox) -> None:
    with pytest.raises(ValueError, match="escapes the work directory"):
        box.run("print(1)", files={"../evil.py": "x"})


@needs_bwrap
def test_output_is_truncated_with_a_marker(box: Sandbox) -> None:
    result = box.run("import sys\nprint('A' * 5000)\nprint('B' * 5000, file=sys.stderr)\nprint('END')")
    assert result.ok and result.limit == "output"
    assert "bytes truncated" in result.stdout and result.stdout.startswith("AAA") and result.stdout.endswith("END\n")
    assert "bytes truncated" in result.stderr
    assert len(result.stdout) < 2200


@needs_bwrap
def test_file_size_limit(box: Sandbox) -> None:
    result = box.run("open('big', 'wb').write(b'x' * (4 * 1024 * 1024))")
    assert not result.ok and result.limit == "file_size"


@needs_bwrap
def test_runs_as_an_unprivileged_user(box: Sandbox) -> None:
    result = box.run("import os\nprint(os.getuid(), os.geteuid(), os.getgid())")
    uid, euid, gid = map(int, result.stdout.split())
    assert uid != 0 and euid != 0 and gid != 0


@needs_bwrap
def test_concurrent_runs(box: Sandbox) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda i: box.run(f"print({i} * 2)"), range(8)))
    assert [r.stdout for r in results] == [f"{i * 2}\n" for i in range(8)]


@needs_bwrap
def test_cli_helper_reports_hostname_and_socket_as_denied(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import socket
        try:
            print("hostname:", open("/etc/hostname").read())
        except OSError as exc:
            print("hostname denied:", type(exc).__name__)
        try:
            socket.create_connection(("93.184.216.34", 80), timeout=2)
            print("socket open")
        except OSError as exc:
            print("socket denied:", type(exc).__name__)
        """
    )
    from agent.config import Settings

    status, text = main_python(script, Settings(home=tmp_path, sandbox=LIMITS))
    assert status == 0
    assert "hostname denied: FileNotFoundError" in text
    assert "socket denied:" in text and "socket open" not in text
    host_name = Path("/etc/hostname").read_text().strip() if Path("/etc/hostname").exists() else None
    if host_name:
        assert f"hostname: {host_name}" not in text


def test_refuses_without_isolation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox_mod, "_bwrap_path", lambda: None)
    with pytest.raises(SandboxUnavailable) as info:
        Sandbox(SandboxSettings())
    message = str(info.value)
    assert "apt-get install bubblewrap" in message and "EVOLVE_SANDBOX__ALLOW_UNSAFE=true" in message


def test_unsafe_mode_must_be_asked_for_and_still_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox_mod, "_bwrap_path", lambda: None)
    box = Sandbox(SandboxSettings(allow_unsafe=True, timeout_s=2, max_output_bytes=100))
    assert box.mode == "unsafe"
    result = box.run("print(6 * 7)")
    assert result.ok and result.stdout == "42\n" and result.isolation[0] == "none"
    slow = box.run("import time\ntime.sleep(30)", timeout_s=0.5)
    assert slow.timed_out and slow.limit == "timeout"


# -- the escape table ---------------------------------------------------------------------------


@dataclass
class Ctx:
    tmp: Path
    secret_file: Path
    listener_port: int
    listener_hits: list


@dataclass
class Attack:
    name: str
    code: Callable[[Ctx], str]
    check: Callable[[SandboxResult, Ctx], None]
    timeout_s: float | None = None


def _no_leak(*needles: str):
    def check(result: SandboxResult, ctx: Ctx) -> None:
        text = result.stdout + result.stderr
        for needle in needles:
            assert needle not in text, f"leaked {needle!r}"
        assert "LEAK" not in text, text

    return check


def _host_passwd_line() -> str:
    try:
        return Path("/etc/passwd").read_text().splitlines()[0]
    except (OSError, IndexError):
        return "root:x:0:0"


def _try_read(paths: str) -> str:
    return textwrap.dedent(
        f"""
        import os
        for p in {paths}:
            try:
                data = open(os.path.expanduser(p), 'rb').read()
                print('LEAK', p, data[:80])
            except OSError as exc:
                print('denied', p, type(exc).__name__)
        """
    )


def _check_written(result: SandboxResult, ctx: Ctx) -> None:
    assert "LEAK" not in result.stdout, result.stdout
    assert ctx.secret_file.read_text() == "top secret database"
    assert not Path("/usr/evolve-escape").exists() and not Path("/evolve-escape").exists()


def _check_listener(result: SandboxResult, ctx: Ctx) -> None:
    assert "LEAK" not in result.stdout, result.stdout
    assert ctx.listener_hits == []


def _check_limit(*limits: str, timed_out: bool | None = None):
    def check(result: SandboxResult, ctx: Ctx) -> None:
        assert result.limit in limits, result
        assert not result.ok
        if timed_out is not None:
            assert result.timed_out is timed_out
        assert "LEAK" not in result.stdout

    return check


ATTACKS = [
    Attack("read /etc/shadow", lambda c: _try_read("['/etc/shadow']"), _no_leak("root:")),
    Attack("read host /etc/passwd", lambda c: _try_read("['/etc/passwd', '/etc/hostname', '/etc/hosts']"), _no_leak(_host_passwd_line())),
    Attack("read ~/.ssh", lambda c: _try_read("['~/.ssh/id_rsa', '/root/.ssh/id_rsa', '/root/.ssh/authorized_keys', '~root/.bashrc']"), _no_leak()),
    Attack("read the project database", lambda c: _try_read(f"[{str(c.secret_file)!r}, '/work/main/pyproject.toml', {str(Path.cwd() / 'pyproject.toml')!r}]"), _no_leak("top secret")),
    Attack(
        "write outside the work dir",
        lambda c: textwrap.dedent(
            f"""
            for p in ['/usr/evolve-escape', '/evolve-escape', '/etc/evolve-escape', {str(c.secret_file)!r}, '/proc/sys/kernel/hostname']:
                try:
                    open(p, 'w').write('pwned')
                    print('LEAK wrote', p)
                except OSError as exc:
                    print('denied', p, type(exc).__name__)
            """
        ),
        _check_written,
    ),
    Attack(
        "connect to 127.0.0.1",
        lambda c: textwrap.dedent(
            f"""
            import socket
            try:
                socket.create_connection(('127.0.0.1', {c.listener_port}), timeout=1)
                print('LEAK connected')
            except OSError as exc:
                print('denied', type(exc).__name__)
            """
        ),
        _check_listener,
    ),
    Attack(
        "connect to an external address",
        lambda c: textwrap.dedent(
            """
            import socket
            for addr in [('1.1.1.1', 80), ('8.8.8.8', 53), ('2606:4700:4700::1111', 80)]:
                try:
                    socket.create_connection(addr, timeout=1)
                    print('LEAK connected', addr)
                except OSError as exc:
                    print('denied', addr, type(exc).__name__)
            """
        ),
        _no_leak(),
    ),
    Attack(
        "DNS lookup",
        lambda c: textwrap.dedent(
            """
            import socket
            try:
                print('LEAK', socket.getaddrinfo('pypi.org', 443))
            except OSError as exc:
                print('denied', type(exc).__name__)
            """
        ),
        _no_leak(),
    ),
    Attack(
        "fork bomb",
        lambda c: "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
        _check_limit("timeout", "processes", "cpu"),
        timeout_s=1.5,
    ),
    Attack("memory bomb (4 GB)", lambda c: "x = bytearray(4 * 1024 ** 3)\nprint('LEAK allocated')", _check_limit("memory")),
    Attack("memory bomb in small steps", lambda c: "xs = []\nwhile True:\n    xs.append(bytearray(16 * 1024 * 1024))", _check_limit("memory")),
    Attack("CPU spin", lambda c: "while True:\n    pass\n", _check_limit("cpu", "timeout")),
    Attack("infinite output", lambda c: "while True:\n    print('spam' * 100)\n", _check_limit("output")),
    Attack("sleep forever", lambda c: "import time\ntime.sleep(10**6)\n", _check_limit("timeout", timed_out=True), timeout_s=1.0),
    Attack(
        "sleep forever after closing its output",
        lambda c: "import os, time\nos.close(1)\nos.close(2)\ntime.sleep(10**6)\n",
        _check_limit("timeout", timed_out=True),
        timeout_s=1.0,
    ),
    Attack(
        "ctypes",
        lambda c: textwrap.dedent(
            """
            import ctypes, ctypes.util
            libc = ctypes.CDLL(None)
            print('uid', libc.getuid())
            rc = libc.system(b"cat /etc/shadow /etc/passwd 2>&1; echo done")
            print('system rc', rc)
            ctypes.string_at(0)  # segfault the interpreter
            """
        ),
        _no_leak("root:"),
    ),
    Attack(
        "os.system and subprocess spawning a shell",
        lambda c: textwrap.dedent(
            """
            import os, subprocess
            os.system('cat /etc/hostname; ls /root /home; id')
            out = subprocess.run(['/bin/sh', '-c', 'cat /etc/passwd; curl -s http://1.1.1.1 || wget -q -O- http://1.1.1.1; echo shell-ran'], capture_output=True, text=True)
            print(out.stdout, out.stderr)
            """
        ),
        _no_leak(_host_passwd_line()),
    ),
    Attack(
        "reading environment variables for keys",
        lambda c: "import os\nprint(sorted(os.environ.items()))\nprint(open('/proc/1/environ','rb').read())\n",
        _no_leak("sk-test-secret", "EVOLVE_", "hunter2"),
    ),
    Attack(
        "killing the parent",
        lambda c: textwrap.dedent(
            f"""
            import os, signal
            for pid in [os.getppid(), 1, {os.getpid()}, -1]:
                try:
                    os.kill(pid, signal.SIGKILL)
                    print('sent', pid)
                except OSError as exc:
                    print('denied', pid, type(exc).__name__)
            """
        ),
        _no_leak(),
    ),
]


_SYSCALLS = textwrap.dedent(
    """
    import ctypes, os
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    def call(name, nr, *args):
        rc = libc.syscall(nr, *[ctypes.c_long(a) for a in args])
        err = ctypes.get_errno()
        if rc == 0 and name.startswith('clone'):
            os._exit(0)  # the child of a clone that worked: only the parent reports
        print(('denied' if rc == -1 and err == 1 else 'LEAK'), name, rc, os.strerror(err), flush=True)
    """
)


def _fill(path: str) -> str:
    return textwrap.dedent(
        f"""
        import os
        chunk = b'x' * (512 * 1024)
        for i in range(400):  # 200 MB in files under the 1 MB file-size limit
            with open(os.path.join({path!r}, f'fill-{{i}}'), 'wb') as fh:
                fh.write(chunk)
        print('LEAK wrote 200 MB to', {path!r})
        """
    )


def _all_denied(result: SandboxResult, calls: int) -> None:
    assert "LEAK" not in result.stdout, result.stdout
    assert result.stdout.count("denied ") == calls, (result.stdout, result.stderr)


ATTACKS += [
    Attack(
        "nested user namespace (unshare -Urn)",
        lambda c: textwrap.dedent(
            """
            import subprocess
            out = subprocess.run(['unshare', '-Urn', 'id', '-u'], capture_output=True, text=True)
            print('LEAK unshare worked' if out.returncode == 0 else 'denied', out.stdout, out.stderr)
            out = subprocess.run(['unshare', '-Urm', 'sh', '-c', 'mount -t tmpfs none /tmp && echo mounted'],
                                 capture_output=True, text=True)
            print('LEAK' if out.returncode == 0 else 'denied', out.stdout, out.stderr)
            """
        ),
        _no_leak("mounted"),
    ),
    Attack(
        "namespace, mount, bpf, keyctl, ptrace, perf calls (seccomp)",
        lambda c: _SYSCALLS + textwrap.dedent(
            """
            call('unshare(CLONE_NEWUSER)', 272, 0x10000000)
            call('unshare(CLONE_NEWNS)', 272, 0x00020000)
            call('setns', 308, 0, 0)
            call('mount', 165, 0, 0, 0, 0, 0)
            call('umount2', 166, 0, 0)
            call('pivot_root', 155, 0, 0)
            call('bpf', 321, 0, 0, 0)
            call('keyctl(GET_KEYRING_ID)', 250, 0, -3, 0)
            call('add_key', 248, 0, 0, 0, 0, 0)
            call('ptrace(TRACEME)', 101, 0, 0, 0, 0)
            call('perf_event_open', 298, 0, 0, -1, -1, 0)
            call('io_uring_setup', 425, 1, 0)
            call('userfaultfd', 323, 0)
            call('open_tree', 428, -100, 0, 0)
            call('fsopen', 430, 0, 0)
            call('clone(CLONE_NEWUSER)', 56, 0x10000000 | 17, 0, 0, 0, 0)
            call('clone(CLONE_NEWNET)', 56, 0x40000000 | 17, 0, 0, 0, 0)
            call('ioctl(TIOCSTI)', 16, 0, 0x5412, 0)
            """
        ),
        lambda result, ctx: _all_denied(result, 18),
    ),
    Attack("fill /dev/shm", lambda c: _fill("/dev/shm"), _check_limit("disk")),
    Attack("fill the work directory", lambda c: _fill("/work"), _check_limit("disk")),
    Attack("fill /tmp", lambda c: _fill("/tmp"), _check_limit("disk")),
    Attack(
        "write into /dev",
        lambda c: textwrap.dedent(
            """
            try:
                open('/dev/evolve-fill', 'wb').write(b'x' * 1024)
                print('LEAK wrote /dev/evolve-fill')
            except OSError as exc:
                print('denied', type(exc).__name__)
            open('/dev/null', 'w').write('still fine')
            """
        ),
        _no_leak(),
    ),
]


@pytest.fixture()
def ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
    monkeypatch.setenv("EVOLVE_MODEL__API_KEY", "hunter2")
    secret = tmp_path / "evolve.db"
    secret.write_text("top secret database")
    os.chmod(tmp_path, 0o755)
    os.chmod(secret, 0o644)  # world-readable on purpose: only the mount namespace protects it
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.05)
    hits: list = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                hits.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield Ctx(tmp=tmp_path, secret_file=secret, listener_port=server.getsockname()[1], listener_hits=hits)
    stop.set()
    thread.join()
    server.close()


@needs_bwrap
@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_escape_is_contained(attack: Attack, box: Sandbox, ctx: Ctx) -> None:
    result = box.run(attack.code(ctx), timeout_s=attack.timeout_s)
    attack.check(result, ctx)
    assert {"seccomp", "no-userns", "tmpfs-limits"} <= set(result.isolation), result.isolation
    assert result.duration_s < (attack.timeout_s or LIMITS.timeout_s) + 2
    assert_usable(box)


@needs_bwrap
def test_one_shot_run_leaves_no_cgroup_behind() -> None:
    """A process that runs the sandbox once and exits at once (`evolve tool python`) must not
    leave its per-run cgroups: the clean-up used to run in a thread that died with it."""
    import subprocess
    import sys

    usable = sorted(set(_PROBE._cgroups.usable.values()))
    if not usable:
        missing("no cgroup can be created here, so cgroup clean-up cannot be checked")
    script = (
        "from tools.sandbox import Sandbox\n"
        "from tools.settings import SandboxSettings\n"
        "import os\n"
        "r = Sandbox(SandboxSettings(timeout_s=5)).run("
        "'import os, time\\nfor _ in range(8):\\n    os.fork() or time.sleep(30)\\n', timeout_s=0.5)\n"
        "print(os.getpid(), r.limit)\n"
    )
    for _ in range(3):
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                              cwd=Path(__file__).resolve().parents[1])
        assert done.returncode == 0, done.stderr
        pid = done.stdout.split()[0]
        left = [p for base in usable for p in base.glob(f"evolve-sbx-{pid}-*")]
        assert left == [], left
