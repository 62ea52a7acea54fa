"""What a long-running process (API, worker, beat) checks before it starts serving.

A dependency it cannot reach gets one clear line naming it and its address, then the process keeps
trying: a supervisor (docker-compose, systemd) often starts it before PostgreSQL or Redis answer, and
Celery's own retry loop would print its banner and retry in silence. A secrets key that cannot open
the jobs the process will handle is a configuration error: it refuses to start, in one line.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

from genqueue.bootstrap import Root
from genqueue.cli.context import die

RETRY_SECONDS = 1.0  # a dependency that comes back is noticed within a second


def _reason(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def wait_for(name: str, where: str, check: Callable[[], object], *, retry: float = RETRY_SECONDS,
             sleep: Callable[[float], None] = time.sleep) -> None:
    """Return once `check()` succeeds; until then one line when it first fails, one when it works."""
    said = False
    while True:
        try:
            check()
        except Exception as exc:
            if not said:
                print(f"genqueue: cannot reach {name} at {where} ({_reason(exc)}); retrying every {retry:g} s",
                      file=sys.stderr, flush=True)
                said = True
            sleep(retry)
            continue
        if said:
            print(f"genqueue: {name} reached at {where}", file=sys.stderr, flush=True)
        return


def redacted_redis_url(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _ping_sql(root: Root) -> None:
    from sqlalchemy import text

    with root.engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def wait_for_sql(root: Root) -> None:
    url = root.engine.url
    wait_for("the database", url.render_as_string(hide_password=True), lambda: _ping_sql(root))


def wait_for_redis(root: Root) -> None:
    wait_for("Redis", redacted_redis_url(root.settings.redis_url), root.redis.ping)


def secrets_or_die(root: Root) -> None:
    from genqueue.core.crypto import SecretsError

    try:
        root.check_secrets()
    except SecretsError as exc:
        die(str(exc))


def preflight(root: Root, *, sql: bool = True, redis: bool = True, secrets: bool = True) -> None:
    """Wait for the dependencies the process uses, then check its secrets key (SQL first: the key check
    reads the newest sealed job)."""
    if sql:
        wait_for_sql(root)
    if redis:
        wait_for_redis(root)
    if secrets:
        secrets_or_die(root)
