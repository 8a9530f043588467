"""The reward-hacking table against the code verifier, now or at an earlier commit.

    python bench/reward_hacking.py [--commit 5f3a20b]

Runs every trick of tests/test_reward_hacking.py (HACKS) and every honest solution (HONEST)
through `verify_code` with the real sandbox and prints which were rewarded, and the time per
verification of the code suite's dev references. With --commit, the verifier is the one in
agent/tasks/base.py at that commit (loaded from git), run on today's sandbox: 5f3a20b is the
last commit before issue 13, where the solution and the tests shared one process.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.config import SandboxSettings  # noqa: E402
from agent.tasks.base import verify_code  # noqa: E402
from agent.tasks.code import CodeSuite  # noqa: E402
from tests.test_reward_hacking import HACKS, HONEST, TASK  # noqa: E402
from tools.sandbox import Sandbox  # noqa: E402


def verifier_at(commit: str):
    source = subprocess.run(["git", "show", f"{commit}:agent/tasks/base.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "base_at_commit.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("base_at_commit", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["base_at_commit"] = module
    spec.loader.exec_module(module)
    return module.verify_code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commit", default="", help="judge with agent/tasks/base.py at this commit")
    args = parser.parse_args()
    verify = verifier_at(args.commit) if args.commit else verify_code
    box = Sandbox(SandboxSettings(timeout_s=8, cpu_s=4, memory_mb=256))
    rewarded = 0
    for name, answer in HACKS.items():
        verdict = verify(TASK, answer, box)
        rewarded += verdict.correct
        print(f"{'REWARDED' if verdict.correct else 'refused '}  {name}")
    honest_ok = 0
    for name, (tests, answer) in HONEST.items():
        entry = next(line.split("(")[0][4:] for line in answer.splitlines()
                     if line.startswith("def ") and not line.startswith("def _"))
        task = TASK.model_copy(update={"tests": tests, "entry_point": entry})
        verdict = verify(task, answer, box)
        honest_ok += verdict.correct
        print(f"{'passes  ' if verdict.correct else 'FAILS   '}  honest: {name}")
    tasks = CodeSuite().load("dev")
    verify(tasks[0], tasks[0].answer, box)
    start = time.perf_counter()
    refs = sum(verify(t, t.answer, box).correct for t in tasks)
    per = (time.perf_counter() - start) / len(tasks) * 1000
    label = f"verifier at {args.commit}" if args.commit else "current verifier"
    print(f"\n{label}: {rewarded}/{len(HACKS)} tricks rewarded, {honest_ok}/{len(HONEST)} honest solutions "
          f"pass, {refs}/{len(tasks)} dev references pass at {per:.0f} ms per verification")


if __name__ == "__main__":
    main()
