"""Job and batch metadata: a flat object of short strings the caller tags work with and filters on.

Pure checks (no I/O), shared by the request bodies (`metadata`) and the `metadata.<key>=<value>` query
filters, so a tag that could be stored can be asked for and the other way round.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from genqueue.intake.errors import FieldError

MAX_KEYS = 16
MAX_KEY_CHARS = 64
MAX_VALUE_CHARS = 512
FILTER_PREFIX = "metadata."


def _text_problem(text: str, limit: int) -> str | None:
    if len(text) > limit:
        return f"must be at most {limit} characters"
    if "\x00" in text:  # PostgreSQL's jsonb refuses \u0000
        return "must not contain NUL characters"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode (no lone surrogates)"
    return None


def metadata_problems(value: Any, path: str = "metadata") -> list[FieldError]:
    """What is wrong with a `metadata` value; [] when it may be stored. Keys are named in the field
    path only when they are short enough to show."""
    if value is None:
        return []
    if not isinstance(value, Mapping):
        return [FieldError(path, "must be an object of string values")]
    out: list[FieldError] = []
    if len(value) > MAX_KEYS:
        out.append(FieldError(path, f"must have at most {MAX_KEYS} keys"))
    for key, item in value.items():
        if not isinstance(key, str):
            out.append(FieldError(path, "must have string keys"))
            continue
        key_problem = "must not be empty" if not key else _text_problem(key, MAX_KEY_CHARS)
        if key_problem is not None:
            out.append(FieldError(path, f"keys {key_problem}"))
            continue
        if not isinstance(item, str):
            out.append(FieldError(f"{path}.{key}", "must be a string"))
            continue
        problem = _text_problem(item, MAX_VALUE_CHARS)
        if problem is not None:
            out.append(FieldError(f"{path}.{key}", problem))
    return out


def metadata_filters(params: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The `metadata.<key>=<value>` pairs of a query string as {key: value}; a key given twice, or a key
    or value that could never be stored, raises ValueError with the field errors as its argument."""
    found: dict[str, str] = {}
    errors: list[FieldError] = []
    for name, value in params:
        if not name.startswith(FILTER_PREFIX):
            continue
        key = name[len(FILTER_PREFIX):]
        if key in found:
            errors.append(FieldError(name if len(key) <= MAX_KEY_CHARS else "metadata", "must be given once"))
            continue
        found[key] = value
    if len(found) > MAX_KEYS:
        errors.append(FieldError("metadata", f"at most {MAX_KEYS} metadata filters"))
    errors += metadata_problems(found)
    if errors:
        raise ValueError(errors)
    return found
