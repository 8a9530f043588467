"""Running the sandboxed child: feed stdin, drain output under a cap and a deadline, kill."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import threading
import time

from tools.sandbox_result import SandboxResult, _Capture, _classify

# Output beyond this multiple of the cap is not worth waiting for: the process is stopped.
_DRAIN_FACTOR = 8


class ProcessRunner:
    """The running half of `Sandbox`: start the prepared argv, watch it, report a SandboxResult."""

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

