"""Publishing to the real broker: a batch becomes one message per job, readable by a worker."""

from __future__ import annotations

import json
from base64 import b64decode

import redis

from genqueue.core.settings import Settings
from genqueue.worker.celery_app import make_celery
from genqueue.worker.enqueue import QUEUE, SUBMIT, Enqueuer


def _bodies(client: redis.Redis, queue: str) -> list[dict]:
    out = []
    for raw in client.lrange(queue, 0, -1):
        message = json.loads(raw)
        out.append({"task": message["headers"]["task"], "args": json.loads(b64decode(message["body"]))[0]})
    return out


def test_batch_publishes_one_message_per_job_in_order(redis_url: str) -> None:
    app = make_celery(Settings(redis_url=redis_url))
    ids = [f"job-{n:04d}" for n in range(1500)]  # more than one pipeline flush (kombu flushes at 1000)
    Enqueuer(app).submit(ids)
    client = redis.Redis.from_url(redis_url)
    bodies = _bodies(client, QUEUE)
    assert len(bodies) == len(ids)
    assert {b["task"] for b in bodies} == {SUBMIT}
    # LPUSH + BRPOP: the oldest message is at the right end, so workers take jobs in submit order.
    assert [b["args"][0] for b in reversed(bodies)] == ids
    client.close()


def test_empty_batch_publishes_nothing(redis_url: str) -> None:
    app = make_celery(Settings(redis_url=redis_url))
    Enqueuer(app).submit([])
    assert redis.Redis.from_url(redis_url).llen(QUEUE) == 0
