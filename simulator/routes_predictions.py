"""/v1/predictions endpoints: create (3 flavours), get, cancel, list."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from genqueue.simulator.catalog import JIGSAW_LATEST, KNOWN_VERSIONS, VersionInfo, resolve_model, resolve_version
from genqueue.simulator.render import parse_rfc3339, prediction_json
from genqueue.simulator.responses import (
    INVALID_VERSION,
    NOT_FOUND,
    bad_request,
    base_url,
    json_body,
    json_response,
    problem,
)
from genqueue.simulator.schema import InvalidField, error_body, validate_input
from genqueue.simulator.state import SimState
from genqueue.simulator.store import TERMINAL, US, Record
from genqueue.simulator.webhook_wire import parse_webhook

DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")
WAIT_STEP = 0.25


def parse_cancel_after(value: str, minimum: float) -> float | None:
    """``30s``, ``5m``, ``1h30m``, ``90`` -> seconds (raised to ``minimum``); None if unparsable."""
    text = value.strip().lower()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        match = DURATION.match(text)
        if match is None or not any(match.groups()):
            return None
        hours, minutes, secs = (float(g) if g else 0.0 for g in match.groups())
        seconds = hours * 3600 + minutes * 60 + secs
    return max(seconds, minimum)


def parse_prefer_wait(value: str | None, maximum: int) -> int | None:
    """``wait`` -> maximum, ``wait=N`` -> N clamped to 1..maximum; None without a wait preference."""
    if not value:
        return None
    for part in value.split(","):
        name, _, arg = part.strip().partition("=")
        if name.strip().lower() != "wait":
            continue
        arg = arg.strip().strip('"')
        if not arg:
            return maximum
        try:
            return max(1, min(maximum, int(float(arg))))
        except ValueError:
            return maximum
    return None


def _sim(request: Request) -> SimState:
    state: SimState = request.app.state.sim
    return state


async def _wait_terminal(sim: SimState, rec: Record, seconds: int) -> None:
    give_up = time.monotonic() + seconds
    while True:
        now_us = sim.store.now_us()
        if rec.state(now_us).status in TERMINAL:
            return
        planned = rec.state(2**62).completed_us or now_us
        remaining = give_up - time.monotonic()
        if remaining <= 0:
            return
        await asyncio.sleep(max(0.001, min(WAIT_STEP, remaining, (planned - now_us) / US)))


async def _create(request: Request, version: VersionInfo, body: dict[str, Any]) -> Response:
    sim = _sim(request)
    inp = body.get("input", {})
    errors: list[InvalidField] = []
    if version.fields is not None:
        errors = validate_input(inp, version.fields)
    elif not isinstance(inp, dict):
        errors = validate_input(inp, ())
    hook, hook_errors = parse_webhook(body)
    errors += hook_errors
    if errors:
        return problem(error_body(errors))
    cancel_after = None
    header = request.headers.get("cancel-after")
    if header is not None:
        cancel_after = parse_cancel_after(header, sim.config.min_cancel_after)
        if cancel_after is None:
            return bad_request(f"Invalid Cancel-After header: {header!r}")
    wait = parse_prefer_wait(request.headers.get("prefer"), sim.config.max_wait)
    rec = sim.store.create(version, inp, cancel_after)
    sim.stats.creates += 1
    if hook is not None:  # before the lost-create fault: a create whose answer is lost still runs
        # The request's own base: public_base_url is applied at send time, as GET would.
        sim.webhooks.subscribe(rec, hook, str(request.base_url).rstrip("/"))
    if sim.faults.roll("fault_lost_create"):
        sim.stats.creates_lost += 1
        if sim.faults.rng.random() < 0.5:
            request.scope["sim.drop"] = True
        return Response(b"", status_code=500, media_type="text/plain")
    headers: dict[str, str] = {}
    if wait is not None:
        headers["Preference-Applied"] = f"wait={wait}"
        await _wait_terminal(sim, rec, wait)
    base = base_url(request, sim.config)
    return json_response(prediction_json(rec, sim.store.now_us(), base), 201, headers)


async def create_prediction(request: Request) -> Response:
    body = await json_body(request)
    if isinstance(body, Response):
        return body
    version = resolve_version(body.get("version"), _sim(request).config.accept_any_version)
    if version is None:
        return problem(INVALID_VERSION)
    return await _create(request, version, body)


async def create_model_prediction(request: Request) -> Response:
    body = await json_body(request)
    if isinstance(body, Response):
        return body
    owner, name = request.path_params["owner"], request.path_params["name"]
    version = resolve_model(owner, name, _sim(request).config.accept_any_version)
    if version is None:
        return problem(NOT_FOUND)
    return await _create(request, version, body)


async def create_deployment_prediction(request: Request) -> Response:
    """Every deployment runs jigsawstack/image-generation (or ``owner/name`` if accept_any_version)."""
    body = await json_body(request)
    if isinstance(body, Response):
        return body
    owner, name = request.path_params["owner"], request.path_params["name"]
    version = resolve_model(owner, name, _sim(request).config.accept_any_version)
    return await _create(request, version or KNOWN_VERSIONS[JIGSAW_LATEST], body)


async def get_prediction(request: Request) -> Response:
    sim = _sim(request)
    rec = sim.store.get(request.path_params["id"])
    if rec is None:
        return problem(NOT_FOUND)
    rec.gets += 1
    return json_response(prediction_json(rec, sim.store.now_us(), base_url(request, sim.config)))


async def cancel_prediction(request: Request) -> Response:
    sim = _sim(request)
    rec = sim.store.get(request.path_params["id"])
    if rec is None:
        return problem(NOT_FOUND)
    sim.store.cancel(rec)
    sim.webhooks.reschedule(rec)
    return json_response(prediction_json(rec, sim.store.now_us(), base_url(request, sim.config)))


def _time_param(request: Request, name: str) -> int | None:
    value = request.query_params.get(name)
    return None if value is None else parse_rfc3339(value)


async def list_predictions(request: Request) -> Response:
    sim = _sim(request)
    try:
        after, before = _time_param(request, "created_after"), _time_param(request, "created_before")
    except ValueError:
        return bad_request("created_after and created_before must be ISO 8601 date-times.")
    raw_cursor = request.query_params.get("cursor", "")
    direction, cursor = "next", None
    if raw_cursor:
        if raw_cursor[:1] not in ("n", "p") or not raw_cursor[1:].isdigit():
            return bad_request("Invalid cursor.")
        direction = "previous" if raw_cursor[0] == "p" else "next"
        cursor = int(raw_cursor[1:])
    records, older, newer = sim.store.page(cursor, direction, after, before)
    base = base_url(request, sim.config)
    now = sim.store.now_us()
    keep = {k: v for k, v in request.query_params.items() if k in ("created_after", "created_before")}

    def link(token: str | None) -> str | None:
        return None if token is None else f"{base}/v1/predictions?" + urlencode({"cursor": token, **keep})

    return json_response({
        "next": link(None if older is None else f"n{older}"),
        "previous": link(None if newer is None else f"p{newer}"),
        "results": [prediction_json(rec, now, base) for rec in records],
    })


def routes() -> list[Route]:
    return [
        Route("/v1/predictions", create_prediction, methods=["POST"]),
        Route("/v1/predictions", list_predictions, methods=["GET"]),
        Route("/v1/predictions/{id}", get_prediction, methods=["GET"]),
        Route("/v1/predictions/{id}/cancel", cancel_prediction, methods=["POST"]),
        Route("/v1/models/{owner}/{name}/predictions", create_model_prediction, methods=["POST"]),
        Route("/v1/deployments/{owner}/{name}/predictions", create_deployment_prediction, methods=["POST"]),
    ]
