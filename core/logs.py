"""Log set-up shared by every entry point: one line per event, and a filter that masks secrets."""

from __future__ import annotations

import logging
import re

# Belt and braces: secrets are never passed to a logger, but a third-party library might echo a
# request or response. Mask anything shaped like a Replicate token, a bearer header or an api_key field.
_PATTERNS = [
    re.compile(r"r8_[A-Za-z0-9]{8,}"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"""(?i)(["']?api_key["']?\s*[:=]\s*["']?)[^"',}\s]+"""),
]


def redact(text: str) -> str:
    for pat in _PATTERNS:
        text = pat.sub(lambda m: (m.group(1) if m.groups() else "") + "***", text)
    return text


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        clean = redact(msg)
        if clean != msg:
            record.msg, record.args = clean, None
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
