"""NUL bytes in the URL: 422 naming the parameter on both databases (PostgreSQL's text has no NUL, and
these reached it as a 500), nothing echoed; and an unexpected error leaves no traceback to the server."""

from __future__ import annotations

import logging

import pytest
from api_helpers import Api, MakeApi
from fastapi import APIRouter

from genqueue.api.guards import nul_fields


def _fields(resp: object) -> list[str]:
    return [f["field"] for f in resp.json()["error"]["fields"]]  # type: ignore[attr-defined]


@pytest.mark.parametrize(("url", "field"), [
    ("/v1/jobs/a%00b", "path"),
    ("/v1/jobs?model=a%00b", "query.model"),
    ("/v1/stats?model=%00", "query.model"),
    ("/v1/jobs?status=queued&cursor=%00", "query.cursor"),
    ("/v1/jobs/x/outputs/0%00", "path"),
])
def test_nul_in_url_is_422_naming_the_parameter(api: Api, url: str, field: str) -> None:
    resp = api.client.get(url, headers=api.auth("ops"))
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["code"] == "validation_error"
    assert _fields(resp) == [field]
    assert "\x00" not in resp.text and "\\u0000" not in resp.text


def test_urls_without_nul_are_untouched() -> None:
    assert nul_fields("/v1/jobs/abc", b"model=a%2Fb&status=queued") == []
    assert [f.field for f in nul_fields("/v1/jobs", b"a=1&b%00c=2")] == ["query.b\\0c"]


def test_unexpected_error_is_a_500_body_and_no_traceback(make_api: MakeApi, sqlite_url: str,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    api = make_api(sqlite_url, raise_errors=True)
    router = APIRouter()

    @router.get("/boom")
    def boom() -> None:
        raise RuntimeError("SELECT secret_param_value")  # the text must reach no log

    api.app.include_router(router)
    with caplog.at_level(logging.DEBUG):
        resp = api.client.get("/boom")  # raise_errors=True: a re-raise would fail the test here
    assert resp.status_code == 500
    assert resp.json()["error"]["code"] == "internal_error"
    assert "secret_param_value" not in caplog.text and "Traceback" not in caplog.text
    assert "unhandled RuntimeError on GET /boom" in caplog.text
