"""Checks every input must pass before it is recorded, whatever the model: plain JSON, storable, bounded.

Python's JSON parser accepts what PostgreSQL, the response encoder or Replicate refuse later, after the
job is committed and enqueued (a 500 for an accepted job): lone surrogates (`"\\ud800"`, not encodable
as UTF-8), `NaN`/`Infinity` (not JSON), and nesting deep enough to exhaust a recursive encoder. Python
callers (the CLI, `Intake.submit`) can pass anything else pydantic's `Any` lets through. The size cap
keeps one job's input from weighing megabytes in every read of it.
"""

from __future__ import annotations

import json
import math
from typing import Any

from genqueue.intake.errors import FieldError

MAX_DEPTH = 32  # objects and arrays, counting `input` itself as 1
DEFAULT_MAX_INPUT_BYTES = 256 * 1024
MAX_PROBLEMS = 20  # per input: enough to fix it, not a list as long as the input
_MAX_SEGMENT = 64  # a key shown in a field path is clipped: field paths echo keys, not whole values

_BAD_UNICODE = "must be valid Unicode (no lone surrogates)"


def _valid_unicode(text: str) -> bool:
    if text.isascii():  # the common case, checked in C without encoding
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _segment(key: str) -> str:
    return key if len(key) <= _MAX_SEGMENT else key[:_MAX_SEGMENT] + "..."


def _scalar_problem(value: Any) -> str | None:
    if isinstance(value, str):
        return None if _valid_unicode(value) else _BAD_UNICODE
    if isinstance(value, bool | int) or value is None:
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else "must be a finite number (NaN and Infinity are not JSON)"
    return "must hold only JSON values (object, array, string, number, boolean, null)"


def _walk(value: dict[str, Any] | list[Any], path: str, depth: int, max_depth: int, out: list[FieldError]) -> None:
    """Scalars are checked in their container's loop and a path is only built for a container or an
    error: most nodes are scalars, and this runs on every job."""
    if depth > max_depth:
        out.append(FieldError(path, f"must be nested at most {max_depth} levels deep"))
        return
    items: list[tuple[str | int, Any]]
    if isinstance(value, list):
        items = list(enumerate(value))
    else:
        items = []
        for key, item in value.items():
            if not isinstance(key, str):
                out.append(FieldError(path, "must have string keys"))
            elif not _valid_unicode(key):
                # The key itself cannot be shown (it would not encode either): name its object.
                out.append(FieldError(path, "must have keys that are valid Unicode (no lone surrogates)"))
            else:
                items.append((key, item))
    for step, item in items:
        if len(out) >= MAX_PROBLEMS:
            return
        if isinstance(item, dict | list):
            _walk(item, f"{path}.{_segment(step) if isinstance(step, str) else step}", depth + 1, max_depth, out)
            continue
        reason = _scalar_problem(item)
        if reason is not None:
            out.append(FieldError(f"{path}.{_segment(step) if isinstance(step, str) else step}", reason))


def json_problems(value: dict[str, Any], path: str = "input", *, max_depth: int = MAX_DEPTH) -> list[FieldError]:
    """What makes `value` unfit to store and send: invalid Unicode, non-finite numbers, too deep, not JSON."""
    out: list[FieldError] = []
    _walk(value, path, 1, max_depth, out)
    return out


def serialized_size(value: dict[str, Any]) -> int:
    """Bytes of `value` as compact UTF-8 JSON; only for values `json_problems` passed."""
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


def larger_than(value: dict[str, Any], limit: int) -> bool:
    """Whether `value` as compact UTF-8 JSON exceeds `limit` bytes. `json.dumps` with its defaults is
    the cached C encoder (any keyword builds a new encoder: slower on small inputs), and its output,
    ASCII with ", " and ": " separators, is never shorter than the compact UTF-8 form: only an input
    that fails this bound is measured exactly."""
    return len(json.dumps(value)) > limit and serialized_size(value) > limit
