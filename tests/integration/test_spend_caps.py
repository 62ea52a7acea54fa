"""Spend caps per key against real PostgreSQL and Redis: a key whose spend in its window reaches its cap
gets 429 `spend_limit_reached` at submit, its queued jobs wait in their lanes (not failed) while other
keys' jobs go, and they go when the window resets. The dispatcher's clock is injected (no Celery: its
sends are recorded, as in test_dispatcher.py)."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from sqlalchemy import func, select, update

import genqueue.worker.dispatcher as dispatcher
from genqueue.bootstrap import Root
from genqueue.intake import Intake, IntakeError, JobRequest
from genqueue.models.base import utcnow
from genqueue.models.keys import Limits, Role, create_key, update_limits
from genqueue.models.tables import Job
from genqueue.worker.dispatcher import Loop
from tests.integration.test_dispatcher import VERSION, _root

PRICE_PER_SECOND = 0.001  # GENQUEUE_PRICE_PER_SECOND's default is 0.0014; this one keeps the sums round
CAP = 0.01  # USD per day: one 10 s prediction


def _key(root: Root, name: str, **limits: object) -> str:
    with root.sessions.begin() as s:
        key, _ = create_key(s, name, Role.SUBMIT, Limits(**limits))  # type: ignore[arg-type]
        return key.id


def _request(i: int) -> JobRequest:
    return JobRequest(version=VERSION, input={"prompt": f"p{i}", "api_key": "sk_test_fake_cap"})


def _submit(intake: Intake, key_id: str, n: int) -> list[str]:
    jobs, _ = intake.submit([_request(i) for i in range(n)], api_key_id=key_id, batch=n > 1)
    return [j.id for j in jobs]


def _finish(root: Root, job_id: str, predict_time: float) -> None:
    """The job ran on Replicate and succeeded now, billed `predict_time` seconds."""
    with root.sessions.begin() as s:
        s.execute(update(Job).where(Job.id == job_id).values(
            status="succeeded", prediction_status="succeeded", predict_time=predict_time, finished_at=utcnow()))


def _statuses(root: Root, ids: list[str]) -> set[str]:
    with root.sessions() as s:
        return set(s.scalars(select(Job.status).where(Job.id.in_(ids))))


@pytest.fixture
def root(tmp_path: Path, pg_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Root:
    monkeypatch.setenv("GENQUEUE_PRICE_PER_SECOND", str(PRICE_PER_SECOND))
    monkeypatch.setattr(dispatcher, "RULES_EVERY", 0.0)  # read the limits (and spends) at every step
    return _root(tmp_path, pg_url, redis_url)


def test_a_cap_reached_mid_batch_holds_the_rest_until_the_window_resets(root: Root) -> None:
    capped = _key(root, "capped", spend_limit=CAP, spend_period="day")
    free = _key(root, "free")
    # The key's first job, sent earlier (not in a lane any more), and the rest of its batch, waiting.
    quiet = Intake(root.sessions, root.cipher, frozenset({"api_key"}), lambda entries: None, 3600,
                   prices=root.settings.prices())
    [first] = _submit(quiet, capped, 1)
    rest = _submit(root.intake, capped, 3)
    others = _submit(root.intake, free, 2)
    _finish(root, first, predict_time=10.0)  # 10 s x 0.001 USD = the cap: reached mid-batch

    now = [datetime.now(UTC).timestamp()]
    sent: list[str] = []
    loop = Loop(root.settings, redis.Redis.from_url(root.settings.redis_url), root.sessions, sent.append,
                "test:1:cap", clock=lambda: now[0])
    for _ in range(3):
        loop.step()
    assert sorted(sent) == sorted(others)  # the other key is served
    assert _statuses(root, rest) == {"queued"}  # held, not failed
    assert {ln.key for ln in loop.ready.lanes(10)} == {capped}  # still in their lane

    # New submissions of that key: 429 naming the limit and when it resets.
    with pytest.raises(IntakeError) as refused:
        _submit(root.intake, capped, 1)
    err = refused.value
    tomorrow = (datetime.fromtimestamp(now[0], UTC) + timedelta(days=1)).date().isoformat()
    assert (err.status, err.code) == (429, "spend_limit_reached")
    assert "0.01 USD per day" in err.message and f"resets at {tomorrow}T00:00:00+00:00" in err.message
    assert [f.field for f in err.fields] == ["spend_limit"]

    # The next UTC day: a new window with nothing spent, so the held jobs go.
    now[0] = datetime.fromisoformat(f"{tomorrow}T00:00:01+00:00").timestamp()
    for _ in range(3):
        loop.step()
    assert sorted(sent) == sorted(others + rest)


def test_raising_the_cap_releases_at_once_and_a_key_under_its_cap_submits(root: Root) -> None:
    capped = _key(root, "capped", spend_limit=CAP, spend_period="month")
    quiet = Intake(root.sessions, root.cipher, frozenset({"api_key"}), lambda entries: None, 3600,
                   prices=root.settings.prices())
    [first] = _submit(quiet, capped, 1)
    rest = _submit(root.intake, capped, 2)
    _finish(root, first, predict_time=10.0)
    sent: list[str] = []
    loop = Loop(root.settings, redis.Redis.from_url(root.settings.redis_url), root.sessions, sent.append,
                "test:1:cap2")
    loop.step()
    assert sent == []
    with root.sessions.begin() as s:
        update_limits(s, capped, spend_limit=1.0)  # `genqueue keys update --spend-limit 1`
    loop.step()
    assert sorted(sent) == sorted(rest)
    assert len(_submit(root.intake, capped, 1)) == 1  # 0.01 of 1.00 USD spent: accepted


def test_with_real_workers_a_cap_reached_mid_batch_holds_the_rest_until_raised(tmp_path: Path, pg_url: str,
                                                                                 redis_url: str) -> None:
    """The same with the simulator and a Celery worker process (its dispatcher reads caps every
    RULES_EVERY = 5 s, on its own clock, so the window reset is the in-process test's; here the cap is
    raised): one job at a time (max_running 1), each ~2 s at 1 USD/s, a cap of 1 USD."""
    from genqueue.simulator.config import SimConfig
    from genqueue.simulator.server import run_in_thread
    from tests.support.pipeline import FAKE_API_KEY, pipeline

    sim = run_in_thread(SimConfig(start_delay=0.1, predict_seconds=2.0, fail_rate=0.0, fault_429=0.0,  # type: ignore[arg-type]
                                  fault_5xx=0.0, fault_drop=0.0, fault_lost_create=0.0, output_mode="url"))
    try:
        with pipeline(tmp_path, pg_url, redis_url, sim.base_url, concurrency=2,
                      env_extra={"GENQUEUE_PRICE_PER_SECOND": "1.0"}) as p:
            with p.sessions.begin() as s:
                key, _ = create_key(s, "capped", Role.SUBMIT, Limits(max_running=1, spend_limit=1.0,
                                                                     spend_period="day"))
                key_id = key.id
            reqs = [JobRequest(version=VERSION, input={"prompt": f"cap {i}", "api_key": FAKE_API_KEY})
                    for i in range(8)]
            jobs, _ = p.intake.submit(reqs, api_key_id=key_id, batch=True)
            ids = [j.id for j in jobs]
            p.wait(ids[:1], timeout=60, statuses=("succeeded",))  # 2 s x 1 USD/s: the cap is reached
            time.sleep(12)  # the worker's dispatcher has read the spend (every 5 s), and what it sent ended
            with p.sessions() as s:
                by_status = dict(Counter(s.scalars(select(Job.status).where(Job.id.in_(ids)))))
            assert by_status.get("failed", 0) == 0 and by_status.get("canceled", 0) == 0
            held = by_status.get("queued", 0)
            assert held >= 4, by_status  # at most the first few went before the cap was seen
            time.sleep(6)
            with p.sessions() as s:
                assert s.scalar(select(func.count()).where(Job.id.in_(ids), Job.status == "queued")) == held
            with p.sessions.begin() as s:
                update_limits(s, key_id, spend_limit=1000.0)  # `genqueue keys update --spend-limit 1000`
            done = p.wait(ids, timeout=120)
            assert {j.status for j in done} == {"succeeded"}
    finally:
        sim.stop()
