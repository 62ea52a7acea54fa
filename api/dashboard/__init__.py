"""The ops dashboard: a static page shell plus its assets, served by the API.

The page holds no data and needs no auth to load; it asks for an ops key (kept in sessionStorage) and
calls `/v1/stats` and `/v1/jobs` with `Authorization: Bearer`, so every figure stays behind the ops role.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from genqueue.api.errors import ApiError

STATIC = Path(__file__).parent / "static"
ASSETS = {"app.js": "text/javascript", "charts.js": "text/javascript", "style.css": "text/css"}
# The page only talks to this origin; images are blob: URLs made from authenticated fetches.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "Cache-Control": "no-cache"}

router = APIRouter(tags=["ops"], include_in_schema=False)


@router.get("/dashboard")
def dashboard() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8", headers=HEADERS)


@router.get("/dashboard/static/{name}")
def asset(name: str) -> FileResponse:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise ApiError(404, "not_found", "no such asset")
    return FileResponse(STATIC / name, media_type=f"{media_type}; charset=utf-8", headers=HEADERS)
