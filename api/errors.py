"""The one error body every API answer uses, and the handlers that map exceptions onto it.

`{"error": {"code": ..., "message": ..., "fields": [{"field": "input.prompt", "reason": "is required"}]}}`
Nothing user-supplied is echoed: validation messages are built from constraints, never input values.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from genqueue.intake.errors import FieldError, IntakeError, field_errors

log = logging.getLogger(__name__)

MAX_FIELDS = 100  # a bad 1000-job batch should not produce a megabyte of errors
_STATUS_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
    406: "not_acceptable", 409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type",
    422: "validation_error", 429: "rate_limited", 503: "unavailable",
}


class FieldErrorOut(BaseModel):
    field: str
    reason: str


class ErrorDetail(BaseModel):
    code: str
    message: str
    fields: list[FieldErrorOut] = []


class ErrorResponse(BaseModel):
    """The body of every 4xx/5xx answer."""

    error: ErrorDetail


class ApiError(Exception):
    """Raise anywhere in a route or dependency to answer with the standard error body."""

    def __init__(self, status: int, code: str, message: str, fields: Sequence[FieldError] = (),
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = list(fields)
        self.headers = dict(headers or {})


def error_body(code: str, message: str, fields: Sequence[FieldError] = ()) -> dict[str, Any]:
    shown = list(fields)[:MAX_FIELDS]
    return {"error": {"code": code, "message": message,
                      "fields": [{"field": f.field, "reason": f.reason} for f in shown]}}


def error_response(status: int, code: str, message: str, fields: Sequence[FieldError] = (),
                   headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message, fields), status_code=status, headers=dict(headers or {}))


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.fields, exc.headers)


async def _intake_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, IntakeError)
    return error_response(exc.status, exc.code, exc.message, exc.fields)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        return error_response(400, "invalid_json", "the request body is not valid JSON",
                              [FieldError("body", "is not valid JSON")])
    fields = field_errors(errors)
    message = "request validation failed"
    if len(fields) > MAX_FIELDS:
        message += f" ({len(fields)} errors, first {MAX_FIELDS} shown)"
    return error_response(422, "validation_error", message, fields)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _STATUS_CODES.get(exc.status_code, "error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    if exc.status_code == 400 and message == "There was an error parsing the body":
        # FastAPI's own parse failure (too deeply nested JSON, bytes that are not UTF-8): say which.
        return error_response(400, "invalid_json", "the request body could not be parsed",
                              [FieldError("body", "must be UTF-8 JSON nested at most a few hundred levels")])
    return error_response(exc.status_code, code, message, headers=exc.headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(IntakeError, _intake_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    # Anything else is answered by `api/guards.py:CatchAll` (Starlette's own last resort re-raises).
