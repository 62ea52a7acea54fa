"""Response helpers: JSON, problem+json bodies exactly as Replicate words them, base URLs."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from genqueue.simulator.config import SimConfig

PROBLEM = "application/problem+json"

UNAUTHENTICATED = {
    "title": "Unauthenticated",
    "detail": "You did not pass a valid authentication token",
    "status": 401,
}
NOT_FOUND = {"detail": "The requested resource could not be found.", "status": 404}
INVALID_VERSION = {
    "title": "Invalid version or not permitted",
    "detail": "The specified version does not exist (or perhaps you don't have permission to use it?)",
    "status": 422,
}


def dumps(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(body), status_code=status, headers=headers, media_type="application/json")


def problem(body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(body), status_code=int(body["status"]), headers=headers, media_type=PROBLEM)


def bad_request(detail: str) -> Response:
    return problem({"title": "Bad request", "detail": detail, "status": 400})


def throttled_body(retry_after: int) -> dict[str, Any]:
    unit = "second" if retry_after == 1 else "seconds"
    return {
        "detail": f"Request was throttled. Expected available in {retry_after} {unit}.",
        "status": 429,
        "retry_after": retry_after,
    }


def base_url(request: Request, config: SimConfig) -> str:
    if config.public_base_url:
        return config.public_base_url.rstrip("/")
    return str(request.base_url).rstrip("/")


async def json_body(request: Request) -> dict[str, Any] | Response:
    """The request's JSON object, or a 400 problem response."""
    raw = await request.body()
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        return bad_request("The request body is not valid JSON.")
    if not isinstance(body, dict):
        return bad_request("The request body must be a JSON object.")
    return body
