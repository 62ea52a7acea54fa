"""At most ADMITTED requests at once between their first SQL statement and their last (ASGI layer).

Why: a request's key lookup checks out a pooled connection in one trip to the threadpool and keeps it
until the route's own trip is over (one connection per request, `api.deps.get_session`). A burst of
more requests than threads (2,000 `Prefer: wait` arriving together) filled every thread with key
lookups blocked on an empty pool, while the requests holding the connections queued for a thread to
finish: nothing moved until the pool timeout. Bounding the requests that may hold a connection across
trips below the pool size (and the threads) always leaves one for the others, so the pool never runs
dry. A request hands its place back when its answer starts (a download streams no SQL), or earlier
with `release(request)` when it goes on without SQL (a wait, an event stream); anything it reads
later opens and closes its session within one trip. Threads blocked on the pool are then only ever
admitted requests' (and the event hub's single-trip reads), so threads are left for the others.
"""

from __future__ import annotations

import asyncio

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ADMITTED = 24  # below the API's pool (5 + 32 overflow, models/db.py) and anyio's 40 threads
SCOPE_TICKET = "genqueue.admission"


class _Ticket:
    def __init__(self, sem: asyncio.Semaphore) -> None:
        self._sem = sem
        self._held = False

    async def acquire(self) -> None:
        await self._sem.acquire()
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._sem.release()


class Admission:
    def __init__(self, app: ASGIApp, limit: int | None = None) -> None:
        self.app = app
        self._sem = asyncio.Semaphore(limit or ADMITTED)  # binds to the running loop on first use

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope.get("path", "").startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        ticket = _Ticket(self._sem)
        await ticket.acquire()
        scope[SCOPE_TICKET] = ticket

        async def send_and_release(message: Message) -> None:
            if message["type"] == "http.response.start":
                ticket.release()  # what follows (a download's chunks) runs no SQL across trips
            await send(message)

        try:
            await self.app(scope, receive, send_and_release)
        finally:
            ticket.release()


def release(request: Request) -> None:
    """Give this request's place back: it holds no SQL connection from here on."""
    ticket: _Ticket | None = request.scope.get(SCOPE_TICKET)
    if ticket is not None:
        ticket.release()
