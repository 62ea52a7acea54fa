"""Introspection and control under ``/_sim/`` (loopback clients, or the admin token: see
`SimMiddleware.admin_refusal`): what the simulator really did."""

from __future__ import annotations

import random
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from genqueue.simulator.render import prediction_json, rfc3339
from genqueue.simulator.responses import NOT_FOUND, bad_request, json_body, json_response, problem
from genqueue.simulator.state import SimState
from genqueue.simulator.store import Record


def _sim(request: Request) -> SimState:
    state: SimState = request.app.state.sim
    return state


def record_json(sim: SimState, rec: Record, now_us: int, files: bool = True) -> dict[str, Any]:
    """Everything about a prediction except raw input values (secrets) and output bytes."""
    view = prediction_json(rec, now_us, "")
    state = rec.state(now_us)
    served = state.status == "succeeded" and not state.data_removed
    return {
        "id": rec.id,
        "model": rec.model,
        "version": rec.version,
        "status": state.status,
        "error": view["error"],
        "created_at": view["created_at"],
        "started_at": view.get("started_at"),
        "completed_at": view.get("completed_at"),
        "deadline": view.get("deadline"),
        "metrics": view.get("metrics"),
        "data_removed": state.data_removed,
        "input_fingerprint": rec.input_fingerprint,
        "input_keys": sorted(rec.input),
        "duplicates": sim.store.duplicate_count(rec),
        "canceled_by_request": rec.canceled_us is not None,
        "gets": rec.gets,
        "webhook": sim.webhooks.describe(rec.id),
        "files": [
            {"name": f"out-{i}.{rec.ext}", "sha256": sha, "served": served, "gets": rec.file_gets.get(i, 0)}
            for i, sha in enumerate(rec.file_shas())
        ] if files and rec.outcome == "succeeded" else [],
    }


async def list_records(request: Request) -> Response:
    sim = _sim(request)
    now = sim.store.now_us()
    status = request.query_params.get("status")
    files = request.query_params.get("files", "true").lower() not in ("0", "false", "no")
    items = []
    for rec in sim.store.order:
        if status is None or rec.state(now).status == status:
            items.append(record_json(sim, rec, now, files))
    dupes = sum(1 for n in sim.store.duplicates.values() if n > 1)
    return json_response({"count": len(items), "duplicate_groups": dupes, "predictions": items,
                          "now": rfc3339(now)})


async def get_record(request: Request) -> Response:
    sim = _sim(request)
    rec = sim.store.get(request.path_params["id"])
    if rec is None:
        return problem(NOT_FOUND)
    return json_response(record_json(sim, rec, sim.store.now_us()))


async def stats(request: Request) -> Response:
    return json_response(_sim(request).stats_json())


async def reset(request: Request) -> Response:
    _sim(request).reset()
    return json_response({"ok": True})


async def get_config(request: Request) -> Response:
    return json_response(_sim(request).config.public_dict())


async def update_config(request: Request) -> Response:
    body = await json_body(request)
    if isinstance(body, Response):
        return body
    sim = _sim(request)
    try:
        sim.config.update(body)
    except ValueError as exc:
        return bad_request(str(exc))
    if "seed" in body:  # re-seed the dice (ids/jitter/failures and faults); records are kept
        seed = sim.config.seed
        sim.store.rng = random.Random(seed) if seed is not None else random.Random()
        sim.faults.reset()
        sim.webhooks.reseed()
    return json_response(sim.config.public_dict())


def routes() -> list[Route]:
    return [
        Route("/_sim/predictions", list_records, methods=["GET"]),
        Route("/_sim/predictions/{id}", get_record, methods=["GET"]),
        Route("/_sim/stats", stats, methods=["GET"]),
        Route("/_sim/reset", reset, methods=["POST"]),
        Route("/_sim/config", get_config, methods=["GET"]),
        Route("/_sim/config", update_config, methods=["POST"]),
    ]
