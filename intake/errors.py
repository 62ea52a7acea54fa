from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_SOURCES = ("body", "query", "path", "header", "cookie")
_REQUEST_FIELDS = ("version", "model", "deployment", "input", "deadline_seconds", "metadata", "retention_days")


@dataclass(frozen=True)
class FieldError:
    field: str  # dotted path, e.g. "jobs.3.input.prompt"
    reason: str


class IntakeError(Exception):
    """A request we refuse; `status` is the HTTP status the API answers with."""

    def __init__(self, status: int, code: str, message: str, fields: list[FieldError] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields or []


def _reason(err: Mapping[str, Any]) -> str:
    kind = err.get("type", "")
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not an accepted field"
    if kind in ("model_attributes_type", "dict_type") and len(err.get("loc", ())) <= 1:
        return "must be a JSON object (Content-Type: application/json)"
    msg = str(err.get("msg", "is invalid"))
    msg = msg.removeprefix("Value error, ")
    for prefix in ("Input should be ", "Value should be "):
        if msg.startswith(prefix):
            return "must be " + msg[len(prefix):]
    for prefix in ("String should have ", "List should have ", "Dictionary should have "):
        if msg.startswith(prefix):
            return "must have " + msg[len(prefix):]
    return msg


def field_errors(errors: Sequence[Mapping[str, Any]]) -> list[FieldError]:
    """pydantic/FastAPI errors as (dotted field path, human reason); `input` and `ctx` are never read."""
    out: list[FieldError] = []
    for err in errors:
        parts = [str(p) for p in err.get("loc", ())]
        if parts and parts[0] in _SOURCES:
            parts = parts[1:]
        reason = _reason(err)
        if err.get("type") == "value_error" and (not parts or parts[-1].isdigit()):
            # A model-level check of a JobRequest ("version must be ..."): name the field it is about.
            named = re.search(r"\b(" + "|".join(_REQUEST_FIELDS) + r")\b", reason)
            if named:
                parts.append(named.group(1))
                reason = reason.removeprefix(named.group(1) + " ")
        out.append(FieldError(".".join(parts) or "body", reason))
    return out
