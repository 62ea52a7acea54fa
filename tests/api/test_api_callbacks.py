"""Callbacks at the API: a bad callback_url is a 422 naming the field (loopback, private, garbage,
credentials), a key without a signing secret cannot ask for callbacks, a key's default URL applies,
a queued job canceled through the API queues its callback in the same transaction, and
`GET /v1/jobs/{id}/callbacks` lists deliveries (own jobs only); /metrics counts them."""

from __future__ import annotations

from typing import Any

import pytest
from api_helpers import Api, MakeApi, body
from sqlalchemy import select, update

from genqueue.core.crypto import load_cipher
from genqueue.models.keys import rotate_callback_secret
from genqueue.models.tables import ApiKey, CallbackDelivery

PUBLIC = "https://hooks.example.com/genqueue?token=fake_query_token"


def _sign_keys(api: Api, *names: str) -> dict[str, str]:
    settings = api.app.state.settings
    cipher = load_cipher(settings.secrets_key.get_secret_value(), settings.data_dir)
    out = {}
    with api.sessions.begin() as s:
        for name in names:
            secret = rotate_callback_secret(s, api.key_ids[name], cipher)
            assert secret is not None
            out[name] = secret
    return out


def _post(api: Api, payload: dict[str, Any], name: str = "alice", path: str = "/v1/jobs") -> Any:
    return api.client.post(path, json=payload, headers=api.auth(name))


@pytest.mark.parametrize(("url", "reason"), [
    ("http://127.0.0.1:9/hook", "must not be a loopback or private address"),
    ("http://[::1]:9/hook", "must not be a loopback or private address"),
    ("http://192.168.0.10/hook", "must not be a loopback or private address"),
    ("http://localhost:9/hook", "must not name a loopback or private host"),
    ("garbage", "must be an absolute http(s) URL"),
    ("file:///etc/passwd", "must be an absolute http(s) URL"),
    ("https://u:p@hooks.example.com/", "must not carry credentials (they would be stored in the clear)"),
])
def test_bad_callback_url_is_422_naming_the_field(sqlite_api: Api, url: str, reason: str) -> None:
    _sign_keys(sqlite_api, "alice")
    before = sqlite_api.count_jobs()
    resp = _post(sqlite_api, {**body(), "callback_url": url})
    assert resp.status_code == 422, resp.text
    assert {"field": "callback_url", "reason": reason} in resp.json()["error"]["fields"]
    assert url not in resp.text  # nothing user-supplied is echoed
    assert sqlite_api.count_jobs() == before


def test_callback_rules_for_events_secrets_and_batches(sqlite_api: Api) -> None:
    _sign_keys(sqlite_api, "alice")
    resp = _post(sqlite_api, {**body(), "callback_events": ["terminal"]})
    assert {"field": "callback_events", "reason": "needs a callback_url"} in resp.json()["error"]["fields"]
    resp = _post(sqlite_api, {**body(), "callback_url": PUBLIC, "callback_events": ["running"]})
    assert {"field": "callback_events", "reason": 'must include "terminal"'} in resp.json()["error"]["fields"]
    resp = _post(sqlite_api, {**body(), "callback_url": PUBLIC, "callback_events": ["done"]})
    assert resp.status_code == 422 and resp.json()["error"]["fields"][0]["field"] == "callback_events.0"
    resp = _post(sqlite_api, {**body(), "callback_url": PUBLIC}, name="bob")  # bob's key has no secret
    assert resp.status_code == 422
    assert resp.json()["error"]["fields"][0]["field"] == "callback_url"
    assert "signing secret" in resp.json()["error"]["fields"][0]["reason"]
    resp = _post(sqlite_api, {"jobs": [{**body(), "callback_url": PUBLIC}, {**body(), "callback_url": "http://10.0.0.1/"}]},
                 path="/v1/jobs/batch")
    assert resp.status_code == 422
    assert [f["field"] for f in resp.json()["error"]["fields"]] == ["jobs.1.callback_url"]


def test_job_url_and_key_default_are_recorded(sqlite_api: Api) -> None:
    _sign_keys(sqlite_api, "alice")
    job = sqlite_api.create(payload={**body(), "callback_url": PUBLIC, "callback_events": ["running", "terminal"]})
    row = sqlite_api.job(job["id"])
    assert (row.callback_url, row.callback_on_running) == (PUBLIC, True)
    with sqlite_api.sessions.begin() as s:
        s.execute(update(ApiKey).where(ApiKey.id == sqlite_api.key_ids["alice"])
                  .values(callback_url="https://default.example.com/cb"))
    row = sqlite_api.job(sqlite_api.create()["id"])
    assert (row.callback_url, row.callback_on_running) == ("https://default.example.com/cb", False)
    row = sqlite_api.job(sqlite_api.create(payload={**body(), "callback_url": PUBLIC})["id"])
    assert row.callback_url == PUBLIC  # the job's own wins


def test_cancel_of_a_queued_job_queues_its_callback_and_the_listing_shows_it(api: Api) -> None:
    _sign_keys(api, "alice")
    job = api.create(payload={**body(), "callback_url": PUBLIC})
    resp = api.client.post(f"/v1/jobs/{job['id']}/cancel", headers=api.auth("alice"))
    assert resp.status_code == 200 and resp.json()["status"] == "canceled"
    with api.sessions() as s:
        [d] = s.scalars(select(CallbackDelivery).where(CallbackDelivery.job_id == job["id"])).all()
    assert (d.event, d.state, d.url) == ("terminal", "pending", PUBLIC)
    listing = api.client.get(f"/v1/jobs/{job['id']}/callbacks", headers=api.auth("alice"))
    assert listing.status_code == 200, listing.text
    [shown] = listing.json()["callbacks"]
    assert shown["id"] == d.id and shown["state"] == "pending" and shown["attempt_log"] == []
    assert shown["url"] == "https://hooks.example.com/genqueue"  # the query (a token, maybe) is left out
    assert api.client.get(f"/v1/jobs/{job['id']}/callbacks", headers=api.auth("bob")).status_code == 404
    assert api.client.get(f"/v1/jobs/{job['id']}/callbacks", headers=api.auth("ops")).status_code == 200
    metrics = api.client.get("/metrics", headers=api.auth("ops")).text
    assert 'genqueue_callback_deliveries{state="pending"} 1.0' in metrics
    assert "genqueue_callback_attempts_failed_total 0.0" in metrics
    stats = api.client.get("/v1/stats", headers=api.auth("ops")).json()
    assert stats["callbacks"]["pending"] == 1


def test_private_callback_url_is_accepted_when_allowed(make_api: MakeApi, sqlite_url: str) -> None:
    api = make_api(sqlite_url, GENQUEUE_CALLBACK_ALLOW_PRIVATE="true")
    _sign_keys(api, "alice")
    job = api.create(payload={**body(), "callback_url": "http://127.0.0.1:9/hook"})
    assert api.job(job["id"]).callback_url == "http://127.0.0.1:9/hook"
