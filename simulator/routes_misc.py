"""Model versions, the webhook signing secret, and output files (``/files/{id}/out-{n}.png``)."""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from genqueue.simulator.catalog import find_version
from genqueue.simulator.responses import NOT_FOUND, json_response, problem
from genqueue.simulator.state import SimState

FILE_NAME = re.compile(r"^out-(\d+)\.(png|svg)$")
MIME = {"png": "image/png", "svg": "image/svg+xml"}


def _sim(request: Request) -> SimState:
    state: SimState = request.app.state.sim
    return state


async def get_version(request: Request) -> Response:
    params = request.path_params
    accept_any = _sim(request).config.accept_any_version
    version = find_version(params["owner"], params["name"], params["id"], accept_any)
    if version is None:
        return problem(NOT_FOUND)
    return json_response(version.as_json())


async def webhook_secret(request: Request) -> Response:
    return json_response({"key": _sim(request).config.webhook_secret})


async def get_file(request: Request) -> Response:
    sim = _sim(request)
    rec = sim.store.get(request.path_params["id"])
    match = FILE_NAME.match(request.path_params["file"])
    if rec is None or match is None:
        return problem(NOT_FOUND)
    index, ext = int(match.group(1)), match.group(2)
    state = rec.state(sim.store.now_us())
    if state.status != "succeeded" or state.data_removed or ext != rec.ext or index >= rec.n_outputs:
        return problem(NOT_FOUND)
    rec.file_gets[index] = rec.file_gets.get(index, 0) + 1
    if sim.faults.first_download_fails(rec.id, index):
        if sim.faults.rng.random() < 0.5:
            return problem(NOT_FOUND)
        return Response(b"Internal Server Error", status_code=500, media_type="text/plain")
    return Response(rec.file_bytes(index), media_type=MIME[ext])


def routes() -> list[Route]:
    return [
        Route("/v1/models/{owner}/{name}/versions/{id}", get_version, methods=["GET"]),
        Route("/v1/webhooks/default/secret", webhook_secret, methods=["GET"]),
        Route("/files/{id}/{file}", get_file, methods=["GET", "HEAD"]),
    ]
