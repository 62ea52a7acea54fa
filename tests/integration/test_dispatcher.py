"""The dispatcher's loop against real Redis and PostgreSQL (no Celery: sends are recorded)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import redis

from genqueue.bootstrap import Root
from genqueue.intake import JobRequest
from genqueue.worker.budget import Seen
from genqueue.worker.dispatcher import LEADER_KEY, Loop
from genqueue.worker.ratelimit import RateLimiter
from tests.support.pipeline import settings_from

VERSION = "jigsawstack/image-generation:43d5bce2e1c97fa1e7d8996187a85cd5c882787989091af3b135c7a16ca23b79"


class AlwaysLeads(Loop):
    """Two of these are two dispatchers that both think they hold the lease."""

    def leads(self) -> bool:
        return True


def _root(tmp_path: Path, db_url: str, redis_url: str) -> Root:
    settings = settings_from({"DATABASE_URL": db_url, "REDIS_URL": redis_url, "GENQUEUE_DATA_DIR": str(tmp_path),
                              "GENQUEUE_CREATE_RATE_PER_MIN": "600000"})
    root = Root(settings)
    root.migrate()
    _teach(redis_url)
    return root


def _teach(redis_url: str) -> None:
    """The answers of an account with room to spare, as Replicate's would teach the fleet: the raised
    cap is reached once the account has shown it (worker.budget). No Replicate answers here."""
    limiter = RateLimiter(redis.Redis.from_url(redis_url), create_per_min=600000)
    for _ in range(60):
        limiter.observe("create", Seen(201, remaining=100000, reset=1))
    assert limiter.rate_per_min("create") > 500000


def _submit(root: Root, n: int, priority: int = 5) -> list[str]:
    reqs = [JobRequest(version=VERSION, input={"prompt": f"p{i}", "api_key": "sk_test_fake"}, priority=priority)
            for i in range(n)]
    jobs, _ = root.intake.submit(reqs, batch=True)
    return [j.id for j in jobs]


def _loop(root: Root, sent: list[str], cls: type[Loop] = Loop, me: str = "test:1:a") -> Loop:
    return cls(root.settings, redis.Redis.from_url(root.settings.redis_url), root.sessions, sent.append, me)


def test_two_dispatchers_at_once_send_each_job_once(tmp_path: Path, pg_url: str, redis_url: str) -> None:
    root = _root(tmp_path, pg_url, redis_url)
    ids = _submit(root, 300)
    sent: list[str] = []
    lock = threading.Lock()

    def record(job_id: str) -> None:
        with lock:
            sent.append(job_id)

    loops = [AlwaysLeads(root.settings, redis.Redis.from_url(redis_url), root.sessions, record, f"test:{i}:x")
             for i in range(2)]

    def run(loop: Loop) -> None:
        deadline = time.monotonic() + 60
        while loop.ready.lanes(1) and time.monotonic() < deadline:
            loop.step()
            # Release what was sent, as the submit step would, so MAX_WAITING never holds the loop.
            for job_id in list(sent):
                loop.ready.release(None, job_id)

    threads = [threading.Thread(target=run, args=(lp,)) for lp in loops]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    counts = Counter(sent)
    assert set(counts) == set(ids)
    assert max(counts.values()) == 1  # taken from its lane once, whichever dispatcher got there first


def test_one_lease_holder_and_a_new_one_when_it_stops(tmp_path: Path, pg_url: str, redis_url: str) -> None:
    root = _root(tmp_path, pg_url, redis_url)
    a, b = _loop(root, [], me="host:1:a"), _loop(root, [], me="host:2:b")
    assert a.leads() and not b.leads()
    a.resign()
    assert b.leads() and not a.leads()
    assert redis.Redis.from_url(redis_url).pttl(LEADER_KEY) > 0  # a lease, not a lock held forever


def test_lanes_lost_with_redis_are_rebuilt_in_order(tmp_path: Path, pg_url: str, redis_url: str) -> None:
    root = _root(tmp_path, pg_url, redis_url)
    ids = _submit(root, 50)
    urgent = _submit(root, 2, priority=9)
    sent: list[str] = []
    loop = _loop(root, sent)
    loop.housekeeping(time.time())  # sets the epoch: the lanes are whole
    redis.Redis.from_url(redis_url).flushdb()  # Redis restarted empty
    loop.housekeeping(time.time())
    _teach(redis_url)  # (the budget learned is lost too, and relearned from the next answers)
    lanes = {ln.name: ln for ln in loop.ready.lanes(100)}
    assert lanes["5:-"].size == 50 and [j for j, _ in lanes["5:-"].heads] == ids
    assert lanes["9:-"].size == 2
    for _ in range(20):  # the relearned bucket starts with one create, then paces
        if len(sent) >= 2:
            break
        time.sleep(loop.step())
    assert sent[:2] == urgent  # priority 9 first, then FIFO


def test_a_dispatched_job_nobody_claimed_goes_back_to_its_lane(tmp_path: Path, pg_url: str, redis_url: str) -> None:
    root = _root(tmp_path, pg_url, redis_url)
    ids = _submit(root, 3)
    sent: list[str] = []
    loop = _loop(root, sent)
    loop.step()  # dispatched: out of the lane, in flight; the submit messages are "lost"
    assert sent == ids and loop.ready.lanes(10) == []
    assert loop.recover_stale(time.time()) == 0  # not stale yet
    back = loop.recover_stale(time.time() + 31)
    assert back == len(sent)
    lane = loop.ready.lanes(10)[0]
    assert [j for j, _ in lane.heads] == ids  # back in their places
