"""Kill a real loop process with SIGKILL at several points; `resume` must finish the run with
no duplicated episode and no lost result, ending where an uninterrupted run ends."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent / "scripts" / "run_loop.py"


def run(home, kill_after, resume):
    return subprocess.run([sys.executable, str(SCRIPT), str(home), str(kill_after), "1" if resume else "0"],
                          capture_output=True, text=True, timeout=300)


def counts(home):
    db = sqlite3.connect(Path(home) / "evolve.db")
    try:
        episodes = db.execute("select count(*), count(distinct run_key) from episode").fetchone()
        results = db.execute("select count(*), count(distinct eval_run_id || task_id) from evalresult").fetchone()
        decisions = [r[0] for r in db.execute("select decision from promotion order by id")]
        return episodes, results, decisions
    finally:
        db.close()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    home = tmp_path_factory.mktemp("ref")
    proc = run(home, 0, False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), counts(home)


# Kill points as shares of the uninterrupted run's model calls: early acquire, cycle 1's
# refine/evaluate, cycle 2, and the very last call.
@pytest.mark.parametrize("share", [0.05, 0.3, 0.6, 0.85, 1.0])
def test_resume_after_sigkill(tmp_path, reference, share):
    ref_summary, ref_counts = reference
    kill_after = max(1, int(ref_summary["model_calls"] * share) - 1)
    killed = run(tmp_path, kill_after, False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    resumed = run(tmp_path, 0, True)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout.strip().splitlines()[-1])
    (episodes, distinct_eps), (results, distinct_results), decisions = counts(tmp_path)
    assert episodes == distinct_eps and results == distinct_results  # nothing duplicated
    assert episodes == ref_counts[0][0] and results == ref_counts[1][0]  # nothing lost
    assert decisions == ref_counts[2]
    assert summary["stop_reason"] == ref_summary["stop_reason"] and summary["cycles"] == ref_summary["cycles"]
    assert summary["incumbent"] == ref_summary["incumbent"]


def test_resume_without_a_run_is_a_clear_error(tmp_path):
    proc = run(tmp_path, 0, True)
    assert proc.returncode != 0 and "nothing to resume" in proc.stderr
