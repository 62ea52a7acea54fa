"""One reader of the job event stream per API process, fanned out to waiters and SSE subscribers.

Why this shape: a waiter (`Prefer: wait`) or an SSE subscriber must hold no thread and no database
connection while nothing happens, so thousands of them cost only their asyncio tasks. Writers append
`job_id + status` to a Redis stream after each commit (`core/events.py`); this process runs ONE task
that blocks on XREAD and hands each event to the futures waiting for that job and to the subscribers'
queues. The jobs are read from SQL once per batch of events, and only when someone listens: the
waiters woken together and every subscriber share that one read. A stream rather than pub/sub: after
a broken connection the reader reads on from the last id it saw, and the ids give SSE its `id:` and
`Last-Event-ID` resume for free.

Lost notifications (Redis away, an event trimmed, a writer whose publish failed) are covered by a
cheap re-check: while anyone waits, one SQL query every RECHECK_SECONDS finds which waited jobs are
terminal. A subscriber whose queue overflows, or whose events could not be read from SQL, has its
stream ended; the client resumes with Last-Event-ID and loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from anyio import to_thread
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from genqueue.core.events import STREAM, JobEvent, decode
from genqueue.models.status import TERMINAL_NAMES
from genqueue.models.tables import Job

log = logging.getLogger(__name__)

RECHECK_SECONDS = 2.0  # how late a waiter may learn of a lost event
BLOCK_MS = 5000  # one XREAD blocks this long at most (then the loop checks it should go on)
QUEUE_MAX = 10_000  # events buffered per subscriber before its stream is ended (it resumes)
_CHUNK = 500  # ids per SQL IN list


def load_jobs(sessions: sessionmaker[Session], ids: Sequence[str]) -> dict[str, Job]:
    """The jobs with their outputs, detached from the session (read in a worker thread)."""
    out: dict[str, Job] = {}
    unique = list(dict.fromkeys(ids))
    with sessions() as session:
        for i in range(0, len(unique), _CHUNK):
            stmt = select(Job).where(Job.id.in_(unique[i:i + _CHUNK])).options(selectinload(Job.outputs))
            out.update({j.id: j for j in session.scalars(stmt)})
    return out


def load_terminal(sessions: sessionmaker[Session], ids: Sequence[str]) -> dict[str, Job]:
    """Those of these jobs that are terminal, with their outputs (the waiters' re-check)."""
    out: dict[str, Job] = {}
    with sessions() as session:
        for i in range(0, len(ids), _CHUNK):
            stmt = (select(Job).where(Job.id.in_(ids[i:i + _CHUNK]), Job.status.in_(TERMINAL_NAMES))
                    .options(selectinload(Job.outputs)))
            out.update({j.id: j for j in session.scalars(stmt)})
    return out


@dataclass(frozen=True)
class Delivery:
    event: JobEvent
    job: Job | None  # as read from SQL after the event; None when it no longer exists


@dataclass(eq=False)
class Subscriber:
    """One SSE connection: its queue, and whether its stream must end (it resumes by Last-Event-ID)."""

    job_id: str | None  # None: every job (the caller's filter and scope are applied by the route)
    queue: asyncio.Queue[Delivery] = field(default_factory=lambda: asyncio.Queue(QUEUE_MAX))
    broken: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, d: Delivery) -> None:
        try:
            self.queue.put_nowait(d)
        except asyncio.QueueFull:
            self.broken.set()


class EventHub:
    """Started on first use; `close()` at shutdown."""

    def __init__(self, redis_url: str, sessions: sessionmaker[Session],
                 redis_factory: Callable[[str], aioredis.Redis] | None = None) -> None:
        self._url = redis_url
        self._sessions = sessions
        # The read timeout must outlast a blocking XREAD (redis-py's default is shorter).
        self._factory = redis_factory or (lambda url: aioredis.Redis.from_url(
            url, socket_connect_timeout=5, socket_timeout=BLOCK_MS / 1000 + 5))
        self._client: aioredis.Redis | None = None
        self._waiters: dict[str, set[asyncio.Future[Job | None]]] = {}
        self._subs: set[Subscriber] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._last_id: str | None = None

    # --- what routes use ----------------------------------------------------------------------------
    @property
    def client(self) -> aioredis.Redis:
        if self._client is None:
            self._client = self._factory(self._url)
        return self._client

    async def watch(self, job_id: str) -> asyncio.Future[Job | None]:
        """A future set when the job is seen terminal, to the job as read then (one read for every
        waiter woken together; None when that read failed). Register BEFORE reading the job, so an
        event between the read and the wait is not missed; `unwatch` it in a `finally`."""
        await self._start()
        fut: asyncio.Future[Job | None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(job_id, set()).add(fut)
        return fut

    def unwatch(self, job_id: str, fut: asyncio.Future[Job | None]) -> None:
        futs = self._waiters.get(job_id)
        if futs is not None:
            futs.discard(fut)
            if not futs:
                del self._waiters[job_id]

    async def subscribe(self, job_id: str | None) -> Subscriber:
        """Register before reading the backlog (events are then in the queue or in the backlog)."""
        await self._start()
        sub = Subscriber(job_id)
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subs.discard(sub)

    async def tip(self) -> str:
        """The newest event id ("0-0" for an empty stream): a position to resume after."""
        newest = await self.client.xrevrange(STREAM, count=1)
        return str(newest[0][0].decode()) if newest else "0-0"

    async def backlog(self, after: str, count: int = _CHUNK) -> tuple[list[JobEvent], str | None]:
        """Up to `count` events after id `after`, oldest first, and the last entry id read (None: no
        more), to page on from."""
        entries = await self.client.xrange(STREAM, min=f"({after}", max="+", count=count)
        events = [e for e in (decode(i, f) for i, f in entries) if e is not None]
        return events, (entries[-1][0].decode() if entries else None)

    async def load(self, ids: Sequence[str]) -> dict[str, Job]:
        return await to_thread.run_sync(load_jobs, self._sessions, ids)

    @property
    def waiting(self) -> int:
        return sum(len(f) for f in self._waiters.values())

    async def close(self) -> None:
        """Stop the reader. Only from the loop it runs on: an app served twice (a test's client and a
        server) is closed by each, and the other loop's pieces are left to that loop."""
        loop = asyncio.get_running_loop()
        mine = [t for t in self._tasks if t.get_loop() is loop]
        for task in mine:
            task.cancel()
        for task in mine:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = [t for t in self._tasks if t not in mine]
        if self._client is not None and not self._tasks:
            with contextlib.suppress(Exception):
                await self._client.aclose()  # type: ignore[attr-defined]  # (types-redis predates it)
            self._client = None

    # --- the reader and the re-check ----------------------------------------------------------------
    async def _start(self) -> None:
        """Start the reader on first use, from the stream's newest id taken now: whatever a caller
        reads after this (the job in SQL, the backlog) leaves no gap before the reader's first event.
        With Redis away the reader takes its position later; the re-check covers waiters meanwhile."""
        if self._last_id is None:
            try:
                self._last_id = await self.tip()
            except Exception as exc:
                log.warning("job events: the stream cannot be read (%s)", type(exc).__name__)
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._read(), name="genqueue-events-reader"),
                           asyncio.create_task(self._recheck(), name="genqueue-events-recheck")]

    async def _read(self) -> None:
        pause = 0.2
        while True:
            try:
                if self._last_id is None:
                    self._last_id = await self.tip()
                reply: Any = await self.client.xread({STREAM: self._last_id}, count=_CHUNK, block=BLOCK_MS)
                pause = 0.2
                if reply:
                    entries = reply[0][1]
                    self._last_id = entries[-1][0].decode()
                    await self._dispatch([e for e in (decode(i, f) for i, f in entries) if e is not None])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away: read on from the last id once it is back
                log.warning("job events: reading the stream failed (%s); again in %.1fs", type(exc).__name__, pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)

    async def _dispatch(self, events: list[JobEvent]) -> None:
        ended = {e.job_id for e in events if e.status in TERMINAL_NAMES and e.job_id in self._waiters}
        wanted = {s.job_id for s in self._subs}
        streamed = [e.job_id for e in events if None in wanted or e.job_id in wanted]
        ids = [*ended, *streamed]
        if not ids:
            return
        try:
            jobs = await self.load(ids)
        except Exception as exc:  # SQL away: waiters read for themselves; streams end and resume
            log.warning("job events: loading %d jobs failed (%s)", len(ids), type(exc).__name__)
            for job_id in ended:
                self._wake(job_id, None)
            self._break_subscribers_if(lambda s: s.job_id is None or s.job_id in streamed)
            return
        for job_id in ended:
            self._wake(job_id, jobs.get(job_id))
        if not streamed:
            return
        for e in events:
            d = Delivery(e, jobs.get(e.job_id))
            for sub in self._subs:
                if sub.job_id is None or sub.job_id == e.job_id:
                    sub.offer(d)

    def _break_subscribers_if(self, pred: Callable[[Subscriber], bool]) -> None:
        for sub in self._subs:
            if pred(sub):
                sub.broken.set()

    def _wake(self, job_id: str, job: Job | None) -> None:
        for fut in self._waiters.pop(job_id, ()):
            if not fut.done():
                fut.set_result(job)

    async def _recheck(self) -> None:
        while True:
            await asyncio.sleep(RECHECK_SECONDS)
            ids = list(self._waiters)
            if not ids:
                continue
            try:
                done = await to_thread.run_sync(load_terminal, self._sessions, ids)
            except Exception as exc:
                log.warning("job events: re-check of %d waited jobs failed (%s)", len(ids), type(exc).__name__)
                continue
            for job_id, job in done.items():
                self._wake(job_id, job)
