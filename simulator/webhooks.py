"""Webhook delivery (reference §9), run on the simulator's own asyncio loop.

Records stay timerless: a create with ``webhook`` adds a :class:`Subscription` and pushes its due
events onto one heap; a single task sleeps until the earliest is due, renders the prediction exactly
as ``GET /v1/predictions/{id}`` would at that moment, signs it and POSTs it through one shared
keep-alive pool (``webhook_http.py``, which explains why not httpx). A semaphore bounds concurrent
sends, so thousands of predictions finishing together share a few dozen connections instead of
opening a socket each.

Events sent:
- ``start``: once, when processing begins; best effort, never retried.
- ``completed``: when terminal (succeeded, failed, canceled, aborted; a cancel moves it to now).
  Retried on non-2xx or a connection error, backoff doubling from ``webhook_backoff_seconds``,
  until ``webhook_retry_seconds`` after the first attempt. Redirects are not followed.
``output`` and ``logs`` are accepted in the filter but never sent: the simulated model produces its
output all at once on success, so ``completed`` carries everything they would.

Fault knobs: ``webhook_fail_rate`` (an attempt at ``completed`` is counted as failed without being
sent) and ``webhook_duplicate_rate`` (a delivered ``completed`` is sent again, same webhook-id).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import random
from dataclasses import dataclass
from typing import Any

from genqueue.simulator.config import SimConfig
from genqueue.simulator.faults import Faults
from genqueue.simulator.render import prediction_json, rfc3339
from genqueue.simulator.responses import dumps
from genqueue.simulator.store import TERMINAL, US, Record, Store
from genqueue.simulator.webhook_http import WebhookHTTP
from genqueue.simulator.webhook_records import Subscription, WebhookStats
from genqueue.simulator.webhook_wire import WebhookRequest, secret_key, signed_headers

log = logging.getLogger(__name__)

START, COMPLETED, DUPLICATE = "start", "completed", "duplicate"
MAX_CONCURRENCY = 64
MAX_SLEEP = 1.0
"""Re-read the clock at least this often: an injected test clock can jump."""
FAR_FUTURE_US = 2**62
MSG_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


@dataclass(slots=True)
class _Job:
    rid: str
    sub: Subscription
    kind: str
    msg_id: str
    stats: WebhookStats


class WebhookDispatcher:
    """Owned by SimState. Scheduling is synchronous (called from request handlers on the loop);
    the sending task starts lazily on the first webhook, or from the app lifespan."""

    def __init__(self, config: SimConfig, store: Store, faults: Faults) -> None:
        self.config = config
        self.store = store
        self.faults = faults
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._client: WebhookHTTP | None = None
        self._sem = asyncio.Semaphore(MAX_CONCURRENCY)
        self._wake = asyncio.Event()
        self._sending: set[asyncio.Task[None]] = set()
        self.reset()

    # --- bookkeeping ------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget every subscription; sends already in flight finish but are no longer counted."""
        self.subs: dict[str, Subscription] = {}
        self._heap: list[tuple[int, int, str, str]] = []
        self._seq = itertools.count()
        self.stats = WebhookStats()
        self.reseed()

    def reseed(self) -> None:
        # Own dice: drawing webhook ids from the store's rng would change seeded prediction ids.
        seed = self.config.seed
        self._rng = random.Random(seed + 104729) if seed is not None else random.Random()

    def _msg_id(self) -> str:
        return "msg_" + "".join(self._rng.choices(MSG_ALPHABET, k=27))

    def _push(self, due_us: int, rid: str, kind: str) -> None:
        seq = next(self._seq)
        heapq.heappush(self._heap, (due_us, seq, rid, kind))
        self._ensure_running()
        if self._heap[0][1] == seq:  # new earliest item: the sleeping task must re-aim
            self._wake.set()

    # --- scheduling (request handlers) --------------------------------------------------------
    def subscribe(self, rec: Record, hook: WebhookRequest, base: str) -> None:
        sub = Subscription(hook.url, base, hook.events)
        self.subs[rec.id] = sub
        end = rec.state(FAR_FUTURE_US).completed_us or rec.end_us
        if START in hook.events and rec.start_us < end:  # an aborted prediction never starts
            sub.start_due = rec.start_us
            self._push(rec.start_us, rec.id, START)
        if COMPLETED in hook.events:
            sub.done_id = self._msg_id()
            sub.done_due = end
            self.stats.pending += 1
            self._push(end, rec.id, COMPLETED)

    def reschedule(self, rec: Record) -> None:
        """After a cancel: the ``completed`` event moves to the new (earlier) end."""
        sub = self.subs.get(rec.id)
        if sub is None or sub.done_due is None or sub.attempts:
            return
        end = rec.state(FAR_FUTURE_US).completed_us or rec.end_us
        if end < sub.done_due:
            sub.done_due = end
            self._push(end, rec.id, COMPLETED)

    # --- lifecycle ----------------------------------------------------------------------------
    def _ensure_running(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # scheduled from plain code (a unit test): start() picks the heap up later
        if self._loop is loop and self._task is not None and not self._task.done():
            return
        if self._loop is not loop:
            # Semaphore, event and client bind to one loop; a new loop (a restarted server) needs new ones.
            self._sem = asyncio.Semaphore(MAX_CONCURRENCY)
            self._wake = asyncio.Event()
            self._client = None
            self._sending = set()
        self._loop = loop
        if self._client is None:
            # Follows no redirects (a 3xx is a failed attempt, as on Replicate) and ignores proxy
            # environment variables, which must not swallow loopback deliveries.
            self._client = WebhookHTTP()
        self._task = loop.create_task(self._run(), name="sim-webhooks")

    async def start(self) -> None:
        self._ensure_running()

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._sending) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None
        self._sending.clear()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # --- the sending task ---------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            if not self._heap:
                self._wake.clear()
                await self._wake.wait()
                continue
            wait_us = self._heap[0][0] - self.store.now_us()
            if wait_us > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(wait_us / US, MAX_SLEEP)):
                        await self._wake.wait()
                continue
            due, _, rid, kind = heapq.heappop(self._heap)
            try:
                job = self._take(due, rid, kind)
            except Exception:  # one bad item must not stop every other prediction's webhooks
                log.exception("webhook %s for %s could not be prepared", kind, rid)
                continue
            if job is None:
                continue
            await self._sem.acquire()
            task = asyncio.create_task(self._deliver(job))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    def _take(self, due: int, rid: str, kind: str) -> _Job | None:
        """The delivery a popped heap item stands for, or None (stale, not applicable, injected fault)."""
        sub, rec = self.subs.get(rid), self.store.get(rid)
        if sub is None or rec is None:
            return None
        now = self.store.now_us()
        status = rec.state(now).status
        if kind == DUPLICATE:
            return _Job(rid, sub, DUPLICATE, sub.done_id, self.stats)
        if kind == START:
            if sub.start_due != due:
                return None
            sub.start_due = None
            # Canceled or aborted before it began (or already over): ``completed`` tells the story.
            return _Job(rid, sub, START, self._msg_id(), self.stats) if status == "processing" else None
        if sub.done_due != due:
            return None  # superseded by a cancel or a retry
        if status not in TERMINAL:  # defensive: the plan only ever moves earlier
            end = rec.state(FAR_FUTURE_US).completed_us or rec.end_us
            sub.done_due = max(end, now + 1)
            self._push(sub.done_due, rid, COMPLETED)
            return None
        sub.done_due = None
        sub.attempts += 1
        if sub.first_attempt_us is None:
            sub.first_attempt_us = now
        if self.faults.roll("webhook_fail_rate"):
            self._retry_or_give_up(sub, rid)
            return None
        return _Job(rid, sub, COMPLETED, sub.done_id, self.stats)

    async def _deliver(self, job: _Job) -> None:
        try:
            result = await self._post(job)
        finally:
            self._sem.release()
        if result is not None and self.subs.get(job.rid) is job.sub:  # not reset meanwhile
            self._settle(job, *result)

    async def _post(self, job: _Job) -> tuple[bool, int, int] | None:
        """Send one attempt: (2xx?, send time, completion time); None if the record is gone."""
        rec, client = self.store.get(job.rid), self._client
        if rec is None or client is None:
            return None
        now = self.store.now_us()
        cfg = self.config
        base = cfg.public_base_url.rstrip("/") if cfg.public_base_url else job.sub.base
        body = dumps(prediction_json(rec, now, base))
        headers = signed_headers(secret_key(cfg.webhook_secret), job.msg_id, now // US, body)
        job.stats.attempts += 1
        try:
            status = await client.post(job.sub.url, body, headers, cfg.webhook_timeout_seconds)
            ok = 200 <= status < 300
        except Exception as exc:  # any transport error is a failed attempt; the task must go on
            # Only the class name: the URL may carry the receiver's tokens, the body carries input secrets.
            log.debug("webhook %s for %s failed: %s", job.kind, job.rid, type(exc).__name__)
            ok = False
        return ok, now, rec.state(now).completed_us or now

    def _settle(self, job: _Job, ok: bool, sent_us: int, completed_us: int) -> None:
        stats, sub = job.stats, job.sub
        if ok:
            stats.sent += 1
        else:
            stats.failures += 1
        if job.kind != COMPLETED:
            return  # start and duplicate deliveries are best effort
        if not ok:
            self._retry_or_give_up(sub, job.rid)
            return
        sub.delivered_us = sent_us
        stats.pending -= 1
        stats.lags_us.append(sent_us - completed_us)
        if self.faults.roll("webhook_duplicate_rate"):
            self._push(self.store.now_us(), job.rid, DUPLICATE)

    def _retry_or_give_up(self, sub: Subscription, rid: str) -> None:
        now = self.store.now_us()
        delay_us = int(self.config.webhook_backoff_seconds * 2 ** (sub.attempts - 1) * US)
        first = sub.first_attempt_us if sub.first_attempt_us is not None else now
        if now + delay_us - first > self.config.webhook_retry_seconds * US:
            sub.given_up = True
            self.stats.given_up += 1
            self.stats.pending -= 1
            return
        sub.done_due = now + delay_us
        self._push(sub.done_due, rid, COMPLETED)

    # --- introspection ------------------------------------------------------------------------
    def describe(self, rid: str) -> dict[str, Any] | None:
        """Delivery state for ``/_sim/predictions`` (no URL: it may carry the receiver's tokens)."""
        sub = self.subs.get(rid)
        if sub is None:
            return None
        return {
            "events": sorted(sub.events),
            "completed_attempts": sub.attempts,
            "delivered_at": None if sub.delivered_us is None else rfc3339(sub.delivered_us),
            "given_up": sub.given_up,
        }

    def stats_json(self) -> dict[str, Any]:
        return self.stats.to_json()
