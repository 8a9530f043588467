"""The worker in-process: queue, verdicts, crashes, outages, timeouts, triggers, status."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from agent.config import ConfigError
from agent.errors import LockBusy
from agent.errors import ModelUnavailable
from agent.surfaces.worker import (
    MAX_QUESTION_CHARS,
    InputError,
    JsonLog,
    Worker,
    claim_next,
    heartbeat_state,
    queue_counts,
    rate_episode,
    read_heartbeat,
    status,
    submit_file,
    submit_question,
)
from memory.embeddings import HashEmbedder
from memory.models import Episode, QueueItem
from memory.store import Store
from tests.fakes import ScriptedModel


@pytest.fixture
def store(settings):
    st = Store(settings, embedder=HashEmbedder())
    yield st
    st.close()


def answering(answer="4", *, fail_on=None):
    """A model that thinks once then gives `answer`; `fail_on(question)` may return an exception."""

    def step(messages, kwargs):
        question = next(m["content"] for m in messages if m["role"] == "user")
        if fail_on is not None:
            exc = fail_on(question)
            if exc is not None:
                return exc
        if kwargs.get("schema") is None:
            return f"Working on it. The answer is {answer}."
        return {"thought": "", "action": "final_answer", "input": answer}

    return ScriptedModel(step)


def make_worker(settings, store, model, **kw):
    kw.setdefault("exit_when_empty", True)
    kw.setdefault("tools", [])
    waits = kw.pop("waits", [])
    return Worker(settings, store, model, wait=waits.append, **kw)


def events(settings):
    path = settings.home / "logs" / "worker.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_bad_questions_are_refused_and_store_nothing(store):
    for bad in ("", "   \n", "x" * (MAX_QUESTION_CHARS + 1), "y" * 1_000_000):
        with pytest.raises(InputError) as info:
            submit_question(store, bad)
        assert "\n" not in str(info.value)
    assert queue_counts(store)["queued"] == 0
    assert store.tasks() == []


def test_invalid_jsonl_queues_nothing_and_names_the_line(store, tmp_path):
    f = tmp_path / "tasks.jsonl"
    f.write_text('{"id": 1, "question": "2+2?", "answer": 4}\n{not json\n')
    with pytest.raises(ConfigError, match="line 2"):
        submit_file(store, f)
    assert queue_counts(store)["queued"] == 0 and store.tasks() == []


def test_pending_and_verified_tasks(settings, store, tmp_path):
    f = tmp_path / "mine.jsonl"
    f.write_text('{"id": "a", "question": "What is 2+2?", "answer": 4, "split": "train"}\n'
                 '{"id": "b", "question": "What is 3+3?", "answer": 6, "split": "train"}\n')
    submit_file(store, f)
    free = submit_question(store, "Tell me 2+2")
    w = make_worker(settings, store, answering("4"))
    assert w.run() == 0
    eps = {e.task_id: e for e in store.episodes(source="worker")}
    assert eps["file/train/mine:a"].verdict == "pass" and eps["file/train/mine:a"].reward == 1.0
    assert eps["file/train/mine:b"].verdict == "fail"
    user_ep = eps[store.get_task(next(iter(t.id for t in store.tasks(suite="user")))).id]
    assert user_ep.verdict == "pending"
    task = store.get_task(user_ep.task_id)
    assert (task.origin, task.split) == ("user", "train")
    assert queue_counts(store) == {"queued": 0, "running": 0, "done": 3, "error": 0}
    # A rating later turns the pending episode into feedback the loop can learn from.
    rated = rate_episode(store, user_ep.id, False, "should show the working")
    assert (rated.verdict, rated.reward, rated.feedback) == ("fail", 0.0, "rated bad by cli: should show the working")
    kinds = [e["event"] for e in events(settings)]
    assert kinds[0] == "worker_start" and kinds[-1] == "worker_stop"
    assert kinds.count("task_done") == 3 and "step_action" in kinds
    assert read_heartbeat(settings)["state"] == "stopped"
    assert free.id is not None


def test_a_crashing_task_is_recorded_and_the_worker_goes_on(settings, store):
    submit_question(store, "boom please")
    submit_question(store, "fine please")
    model = answering("1", fail_on=lambda q: RuntimeError("tool exploded") if "boom" in q else None)
    w = make_worker(settings, store, model)
    assert w.run() == 0
    items = {store.get_task(i.task_id).question: i for i in _items(store)}
    assert items["boom please"].status == "error" and "tool exploded" in items["boom please"].error
    assert items["fine please"].status == "done"
    errs = [e for e in store.episodes() if e.verdict == "error"]
    assert len(errs) == 1 and "RuntimeError" in errs[0].error


def test_outage_keeps_its_place_and_backs_off(settings, store):
    submit_question(store, "first")
    submit_question(store, "second")
    outages = {"n": 0}

    def fail_on(q):
        if q == "first" and outages["n"] < 3:
            outages["n"] += 1
            return ModelUnavailable("endpoint down")
        return None

    waits: list[float] = []
    w = make_worker(settings, store, answering("1", fail_on=fail_on), waits=waits, backoff_s=5, backoff_max_s=12)
    assert w.run() == 0
    assert waits == [5, 10, 12]  # doubling, capped
    order = [e.task_id for e in store.episodes()]
    assert [store.get_task(t).question for t in order] == ["first", "second"]
    assert all(e.verdict == "pending" for e in store.episodes())
    assert [e["event"] for e in events(settings)].count("backoff") == 3


def test_stop_during_outage_requeues_the_item(settings, store):
    submit_question(store, "q")
    w = None

    def fail_on(q):
        return ModelUnavailable("down")

    def wait(seconds):
        w.request_stop()

    w = Worker(settings, store, answering(fail_on=fail_on), tools=[], wait=wait, exit_when_empty=True)
    assert w.run() == 0
    assert queue_counts(store)["queued"] == 1 and store.episodes() == []


def test_timeout_is_an_error_episode(settings, store):
    submit_question(store, "slow one")
    ticks = iter(range(0, 10_000, 50))  # every clock read is 50 s later
    w = make_worker(settings, store, answering("1"), task_timeout_s=60, clock=lambda: next(ticks))
    w.run()
    (ep,) = store.episodes()
    assert ep.verdict == "error" and "TaskTimeout" in ep.error


def test_restart_resumes_a_running_item_without_duplicating(settings, store):
    submit_question(store, "one")
    submit_question(store, "two")
    # A worker that died after storing the episode of item 1 but before marking it done.
    w1 = make_worker(settings, store, answering("1"), max_items=1)
    item = claim_next(store)
    w1._attempt(item, store.get_task(item.task_id), __import__("agent.policy").policy.incumbent(store))
    assert queue_counts(store)["running"] == 1 and len(store.episodes()) == 1
    model = answering("1")
    w2 = make_worker(settings, store, model)
    assert w2.run() == 0
    assert queue_counts(store) == {"queued": 0, "running": 0, "done": 2, "error": 0}
    assert len(store.episodes()) == 2  # item 1 was not solved again
    assert sum(1 for msgs, kw in model.calls if kw.get("schema") is None) == 1
    start = next(e for e in events(settings) if e["event"] == "worker_start" and e["resumed"])
    assert start["resumed"] == [item.id]


def test_improvement_every_n_episodes_persists_across_restarts(settings, store):
    for i in range(5):
        submit_question(store, f"q{i}")
    calls = []
    w = make_worker(settings, store, answering("1"), improve=lambda: calls.append(1) or {"stop_reason": "cycles"},
                    improve_every=2, max_items=3)
    w.run()
    assert len(calls) == 1
    w2 = make_worker(settings, store, answering("1"), improve=lambda: calls.append(1) or {"stop_reason": "cycles"},
                     improve_every=2)
    w2.run()
    assert len(calls) == 2  # episodes 4 and 5 complete the second batch of two
    kinds = [e["event"] for e in events(settings)]
    assert kinds.count("improve_done") == 2


def test_improvement_failure_and_busy_lock_do_not_stop_the_worker(settings, store):
    from agent.surfaces.schedule import improvement_lock

    submit_question(store, "a")
    submit_question(store, "b")

    def boom():
        raise RuntimeError("loop broke")

    w = make_worker(settings, store, answering("1"), improve=boom, improve_every=1)
    assert w.run() == 0
    assert queue_counts(store)["done"] == 2
    assert [e["event"] for e in events(settings)].count("improve_error") == 2
    submit_question(store, "c")
    with improvement_lock(settings, what="test"):
        w = make_worker(settings, store, answering("1"), improve=lambda: {}, improve_every=1)
        w.run()
    skipped = [e for e in events(settings) if e["event"] == "improve_skipped"]
    assert skipped and "holds the lock" in skipped[0]["reason"]


def test_scheduled_improvement_uses_the_wall_clock_given(settings, store):
    submit_question(store, "a")
    submit_question(store, "b")
    now = {"t": datetime(2025, 1, 1, 2, 59, tzinfo=timezone.utc)}
    calls = []

    def improve():
        calls.append(now["t"])
        return {}

    def wall():
        t = now["t"]
        now["t"] = t + timedelta(minutes=1)
        return t

    w = make_worker(settings, store, answering("1"), improve=improve, schedule="0 3 * * *", wall=wall)
    w.run()
    assert len(calls) == 1


def test_bad_schedule_is_one_clear_message(settings, store):
    with pytest.raises(ConfigError, match="5 fields"):
        Worker(settings, store, answering(), schedule="every day")
    with pytest.raises(ConfigError, match="not a valid cron"):
        Worker(settings, store, answering(), schedule="61 * * * *")


def test_second_worker_on_the_same_home_is_refused(settings, store):
    from filelock import FileLock

    lock = FileLock(str(settings.locks_dir / "worker.lock"), thread_local=False)
    lock.acquire()
    try:
        with pytest.raises(LockBusy, match="another worker"):
            make_worker(settings, store, answering()).run()
    finally:
        lock.release()


def test_status_reports_queue_incumbent_and_errors(settings, store):
    submit_question(store, "boom")
    submit_question(store, "later")
    w = make_worker(settings, store, answering("1", fail_on=lambda q: ValueError("bad tool") if q == "boom" else None),
                    max_items=1)
    w.run()
    out = status(store, settings)
    assert out["queue"]["queued"] == 1 and out["queue"]["error"] == 1
    assert out["incumbent"]["version"] == 1
    assert out["worker"]["state"] == "stopped"
    assert "bad tool" in out["errors"][0]["error"]
    json.dumps(out)


def test_heartbeat_states():
    assert heartbeat_state(None) == "never"
    assert heartbeat_state({"state": "stopped"}) == "stopped"
    import os

    assert heartbeat_state({"state": "idle", "unix": 1000.0, "pid": os.getpid()}, now=1010.0) == "running"
    assert heartbeat_state({"state": "idle", "unix": 1000.0, "pid": os.getpid()}, now=2000.0) == "stale"


def test_log_rotates(tmp_path, monkeypatch):
    import agent.surfaces.worker_log as wm

    monkeypatch.setattr(wm, "LOG_ROTATE_BYTES", 100)
    log = JsonLog(tmp_path / "w.jsonl")
    for i in range(10):
        log("tick", i=i)
    assert (tmp_path / "w.jsonl.1").exists()
    assert (tmp_path / "w.jsonl").stat().st_size < 300


def _items(store):
    from sqlmodel import select

    with store.session(read_only=True) as s:
        return list(s.exec(select(QueueItem).order_by(QueueItem.id)).all())


def test_rate_credits_experiences_only_on_rating(settings, store):
    exp = store.add_experience("insight", "Always check units.", source_task_ids=["user/train/x"])
    from agent.surfaces.worker import user_task

    task = user_task("q")
    store.upsert_tasks([task])
    ep = store.add_episode(Episode(run_key="k", task_id=task.id, split="train", policy_id="p",
                                   model_fingerprint="f", shown_experience_ids=[exp.id]))
    assert store.get_experience(exp.id).uses == 0
    rate_episode(store, ep.id, True)
    row = store.get_experience(exp.id)
    assert (row.uses, row.successes) == (1, 1)


def test_worker_and_chat_run_the_policys_own_model(settings, store, monkeypatch):
    """A fine-tuned incumbent (model_id) used to run on the base model in chat and the worker."""
    import agent.model.llm as llm
    from agent.policy import INCUMBENT, PolicySpec, create_candidate, ensure_initial

    base = ensure_initial(store)
    tuned_spec = PolicySpec.model_validate(base.spec).model_copy(update={"model_id": "ft:tuned-1"})
    store.set_pointer(INCUMBENT, create_candidate(store, base, tuned_spec).id)
    tuned = answering("7")
    tuned.name, tuned.fingerprint = "ft:tuned-1", "fake:tuned"
    asked = []
    monkeypatch.setattr(llm, "make_model", lambda s, *, model_id="", adapter="": asked.append(model_id) or tuned)
    submit_question(store, "What is 3+4?", answer="7")
    make_worker(settings, store, answering("0")).run()
    ep = store.episodes(source="worker")[0]
    assert asked == ["ft:tuned-1"] and (ep.model_fingerprint, ep.verdict) == ("fake:tuned", "pass")

    import io

    from rich.console import Console

    from agent.surfaces.chat import ChatSession

    session = ChatSession(settings, store, answering("0"), [], console=Console(file=io.StringIO()))
    assert session.ask("What is 3+4?").answer == "7"


def test_worker_verifies_code_tasks_in_the_sandbox(settings, store):
    """`evolve run` built its worker without a sandbox, so every code task became an error item."""
    from agent.surfaces.worker import worker_sandbox
    from memory.models import Task

    box = worker_sandbox(settings)
    if box is None:
        pytest.fail("bubblewrap cannot run here; the worker's code verification needs it")
    task = Task(id="user/train/add", suite="user", split="train", origin="user", kind="code",
                question="Write add(a, b) returning the sum.", entry_point="add", tests="assert add(2, 3) == 5")
    from agent.surfaces.worker import enqueue

    enqueue(store, [task])
    code = "def add(a, b):\n    return a + b\n"
    # A code task is written by the code strategy: one request without a schema, the function back.
    writer = ScriptedModel(lambda messages, kwargs: f"```python\n{code}```")
    make_worker(settings, store, writer, sandbox=box).run()
    ep = store.episodes(source="worker")[0]
    assert ep.verdict == "pass", ep.feedback
