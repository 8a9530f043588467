"""Several real processes on one store: concurrent writers, a reader, a writer killed mid-write."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from agent.config import Settings
from memory.embeddings import HashEmbedder
from memory.store import Store

ROOT = Path(__file__).resolve().parents[1]

WRITER = textwrap.dedent("""
    import random, sys
    from agent.config import Settings
    from memory.embeddings import HashEmbedder
    from memory.store import Store
    home, prefix, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rng = random.Random(prefix)
    st = Store(Settings(home=home, cache_dir=home + "/cache", memory={"dedup_threshold": 0.999}),
               embedder=HashEmbedder(256))
    for i in range(n):
        words = " ".join("w%08x" % rng.getrandbits(32) for _ in range(8))
        kind = ("exemplar", "insight")[i % 2]
        row = st.add_experience(kind, f"{prefix} item {i}: {words}", key=words, split="train")
        assert row is not None, i
        print(i, row.id, flush=True)
    print("done", flush=True)
""")

READER = textwrap.dedent("""
    import sys, time
    from agent.config import Settings
    from memory.embeddings import HashEmbedder
    from memory.store import Store
    home, seconds = sys.argv[1], float(sys.argv[2])
    st = Store(Settings(home=home, cache_dir=home + "/cache"), embedder=HashEmbedder(256))
    end = time.time() + seconds
    queries = 0
    while time.time() < end:
        st.retrieve("exemplar", "w0000 item", 3)
        queries += 1
    print("queries", queries, flush=True)
""")


def _spawn(code: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _settings(home: Path) -> Settings:
    return Settings(home=home, cache_dir=home / "cache", memory={"dedup_threshold": 0.999})


def _assert_consistent(home: Path) -> Store:
    st = Store(_settings(home), embedder=HashEmbedder(256))
    rows = st.experiences()
    for kind in ("exemplar", "insight"):
        want = {r.id for r in rows if r.kind == kind}
        assert st.index.all_ids(f"exp-{kind}-train-verified") == want
    # Every row is found by its own key.
    for r in rows[:: max(1, len(rows) // 25)]:
        assert st.retrieve(r.kind, r.key, 1)[0].id == r.id
    return st


def test_two_writers_and_a_reader_lose_and_corrupt_nothing(tmp_path):
    home = tmp_path / "home"
    Store(_settings(home), embedder=HashEmbedder(256)).close()  # migrate once, up front
    n = 60
    reader = _spawn(READER, home, 6)
    writers = [_spawn(WRITER, home, prefix, n) for prefix in ("alpha", "beta")]
    outs = [w.communicate(timeout=240) for w in writers]
    for w, (out, err) in zip(writers, outs):
        assert w.returncode == 0, err
        assert out.strip().endswith("done")
    r_out, r_err = reader.communicate(timeout=240)
    assert reader.returncode == 0, r_err
    assert int(r_out.split()[-1]) > 0
    st = _assert_consistent(home)
    contents = [r.content for r in st.experiences()]
    assert len(contents) == 2 * n
    for prefix in ("alpha", "beta"):
        assert {int(c.split()[2].rstrip(":")) for c in contents if c.startswith(prefix)} == set(range(n))
    st.close()


@pytest.mark.parametrize("after", [5, 23])
def test_writer_killed_mid_write_leaves_a_store_that_opens_and_reindexes(tmp_path, after):
    home = tmp_path / "home"
    Store(_settings(home), embedder=HashEmbedder(256)).close()
    w = _spawn(WRITER, home, "gamma", 100_000)
    seen = 0
    deadline = time.time() + 120
    while seen < after and time.time() < deadline:
        line = w.stdout.readline()
        if not line:
            break
        seen += 1
    # Let it get back into the middle of another write, then kill it without warning.
    time.sleep(0.013 * after)
    w.send_signal(signal.SIGKILL)
    w.wait(timeout=30)
    assert seen >= after, w.stderr.read()
    st = _assert_consistent(home)
    assert len(st.experiences()) >= after
    assert st.reindex() == len(st.experiences())
    st.close()
    st = _assert_consistent(home)
    # And it keeps working as a store.
    assert st.add_experience("insight", "written after the crash", split="train") is not None
    st.close()
