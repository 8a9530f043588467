"""Kill the multi-candidate loop with SIGKILL while screening and while evaluating on dev; `resume`
must finish with no duplicated episode, result or candidate record, ending where an
uninterrupted run ends."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent / "scripts" / "run_search_loop.py"


def run(home, kill_after, resume):
    return subprocess.run([sys.executable, str(SCRIPT), str(home), str(kill_after), "1" if resume else "0"],
                          capture_output=True, text=True, timeout=300)


def counts(home):
    db = sqlite3.connect(Path(home) / "evolve.db")
    try:
        episodes = db.execute("select count(*), count(distinct run_key) from episode").fetchone()
        results = db.execute("select count(*), count(distinct eval_run_id || '/' || task_id) "
                             "from evalresult").fetchone()
        records = [tuple(r) for r in db.execute("select cycle, candidate_id, decision from promotion order by id")]
        return episodes, results, records
    finally:
        db.close()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    home = tmp_path_factory.mktemp("ref")
    proc = run(home, 0, False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), counts(home)


def test_reference_run_records_every_candidate(reference):
    summary, (_, _, records) = reference
    assert summary["decisions"][0] == "promote"
    assert len({r[1] for r in records if r[0] == 1}) == len([r for r in records if r[0] == 1]) >= 3


# Kill points as shares of the uninterrupted run's 191 model calls: cycle 1's screening (calls
# 10-33) and dev evaluation (34-143), cycle 2's screening (150-161).
@pytest.mark.parametrize("share", [0.1, 0.4, 0.8])
def test_resume_after_sigkill(tmp_path, reference, share):
    ref_summary, ref_counts = reference
    kill_after = max(1, int(ref_summary["model_calls"] * share) - 1)
    killed = run(tmp_path, kill_after, False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    resumed = run(tmp_path, 0, True)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout.strip().splitlines()[-1])
    (episodes, distinct_eps), (results, distinct_results), records = counts(tmp_path)
    assert episodes == distinct_eps and results == distinct_results  # nothing duplicated
    assert episodes == ref_counts[0][0] and results == ref_counts[1][0]  # nothing lost
    assert records == ref_counts[2]  # every candidate recorded once, in the same order
    assert summary["decisions"] == ref_summary["decisions"] and summary["incumbent"] == ref_summary["incumbent"]
