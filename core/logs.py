"""Log set-up shared by every entry point: one line per event, and a filter that masks secrets.

Job secrets are masked by value: whoever holds a job's secrets in the clear (intake splitting them off,
the worker opening the sealed token) registers the actual strings with `register_secrets`, and the
filter replaces them in the formatted message, the exception text and the stack text. A regex on a
field name cannot do this: it misses other secret field names, and values holding a quote, a comma or
a space end its match early.

The registry is context-local (a ContextVar): each thread, and each request the API runs in the
threadpool, has its own, so one job's secrets are not spread across other threads. It is bounded
(the newest `MAX_REGISTERED` values are kept) because a worker thread lives for many jobs.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from contextvars import ContextVar

MASK = "***"
# Shorter strings are not masked: masking "on" or "1" everywhere would make logs unreadable, and a
# secret that short is no secret.
MIN_SECRET_LEN = 4
MAX_REGISTERED = 1024

_SECRETS: ContextVar[tuple[str, ...]] = ContextVar("genqueue_secrets", default=())

# Belt and braces for what nobody registers: a third-party library echoing a request or response with
# the Replicate token or a bearer header, or an api_key field in a context that holds no registry.
_PATTERNS = [
    re.compile(r"r8_[A-Za-z0-9]{8,}"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"""(?i)(["']?api_key["']?\s*[:=]\s*["']?)[^"',}\s]+"""),
]


def _forms(value: str) -> list[str]:
    """The ways a value shows up in text: as is, JSON-escaped (ASCII or not), and as repr() escapes it."""
    return [value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1], repr(value)[1:-1]]


def register_secrets(values: Iterable[str]) -> None:
    """Mask these strings (and their escaped forms) in every log record of this context from now on."""
    new = [f for v in values if isinstance(v, str) and len(v) >= MIN_SECRET_LEN for f in _forms(v)]
    if not new:
        return
    current = _SECRETS.get()
    fresh = tuple(dict.fromkeys(f for f in new if f not in current))
    if fresh:
        _SECRETS.set((current + fresh)[-MAX_REGISTERED:])


def registered_secrets() -> tuple[str, ...]:
    return _SECRETS.get()


def scrub(text: str) -> str:
    """`text` with every registered secret masked; longest first, so a secret holding another one
    is masked whole."""
    present = [s for s in _SECRETS.get() if s in text]
    for secret in sorted(present, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def redact(text: str) -> str:
    text = scrub(text)
    for pat in _PATTERNS:
        text = pat.sub(lambda m: (m.group(1) if m.groups() else "") + MASK, text)
    return text


class RedactingFilter(logging.Filter):
    """Masks the message (arguments merged in), the exception text and the stack text of a record."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        clean = redact(msg)
        if clean != msg:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            # Formatters reuse a cached exc_text, so the masked text is what every handler writes.
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def setup_logging(level: str = "INFO") -> None:
    root = logging.getLogger()
    root.setLevel(level)
    if not any(getattr(h, "_genqueue", False) for h in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        handler._genqueue = True  # type: ignore[attr-defined]
        handler.addFilter(RedactingFilter())
        root.addHandler(handler)
    # httpx logs every request URL at INFO; keep it at WARNING so logs stay one line per job event.
    logging.getLogger("httpx").setLevel(logging.WARNING)
