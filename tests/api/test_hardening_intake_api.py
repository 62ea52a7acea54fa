"""Intake hardening through the real app: hostile JSON, input size, nested secrets, the idempotency hash."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from api_helpers import Api, MakeApi, no_secret

from genqueue.core.crypto import decrypt_secrets

FAKE = "sk_fake_123"


def _post_raw(api: Api, raw: str, path: str = "/v1/jobs") -> Any:
    return api.client.post(path, content=raw.encode(),
                           headers={**api.auth("alice"), "Content-Type": "application/json"})


def _fields(resp: Any) -> list[str]:
    return [f["field"] for f in resp.json()["error"]["fields"]]


# ---- finding 1: invalid Unicode, deep nesting, non-finite numbers ------------------------------------

@pytest.mark.parametrize(("raw", "field"), [
    ('{"model": "a/b", "input": {"prompt": "\\ud800x"}}', "input.prompt"),
    ('{"model": "a/b", "input": {"opts": [1, {"tag": "ok\\udfff"}]}}', "input.opts.1.tag"),
    ('{"model": "a/b", "input": {"k\\ud800": 1}}', "input"),
    ('{"model": "a/b", "input": {"x": NaN}}', "input.x"),
    ('{"model": "a/b", "input": {"x": [Infinity]}}', "input.x.0"),
    ('{"model": "a/b", "input": {"x": {"y": -Infinity}}}', "input.x.y"),
])
def test_hardening_intake_bad_json_values_are_422_naming_the_field(api: Api, raw: str, field: str) -> None:
    resp = _post_raw(api, raw)
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["code"] == "validation_error"
    assert field in _fields(resp)
    assert api.count_jobs() == 0 and api.enqueuer.sent == []


def test_hardening_intake_deep_nesting_is_422(api: Api) -> None:
    for depth in (40, 900):
        raw = '{"model": "a/b", "input": {"x": ' + "[" * depth + "1" + "]" * depth + "}}"
        resp = _post_raw(api, raw)
        assert resp.status_code == 422, (depth, resp.status_code, resp.text[:300])
        assert any(f.startswith("input") for f in _fields(resp))
    # A batch names the job.
    deep = "[" * 40 + "1" + "]" * 40
    raw = '{"jobs": [{"model": "a/b", "input": {}}, {"model": "a/b", "input": {"x": ' + deep + "}}]}"
    resp = _post_raw(api, raw, "/v1/jobs/batch")
    assert resp.status_code == 422 and any(f.startswith("jobs.1.input") for f in _fields(resp))
    assert api.count_jobs() == 0
    # Nesting within the limit is fine.
    ok = _post_raw(api, '{"model": "a/b", "input": {"x": ' + "[" * 20 + "1" + "]" * 20 + "}}")
    assert ok.status_code == 202, ok.text


# ---- finding 3: input size cap; the list view leaves inputs out unless asked -------------------------

def test_hardening_intake_input_size_cap(make_api: MakeApi, sqlite_url: str) -> None:
    api = make_api(sqlite_url)
    big = {"model": "a/b", "input": {"x": "y" * (300 * 1024)}}
    resp = api.client.post("/v1/jobs", json=big, headers=api.auth("alice"))
    assert resp.status_code == 413, resp.text
    assert _fields(resp) == ["input"]
    assert api.count_jobs() == 0
    small = make_api(sqlite_url, GENQUEUE_MAX_BODY_BYTES=16000)  # inputs: a sixteenth, 1000 bytes
    resp = small.client.post("/v1/jobs", json={"model": "a/b", "input": {"x": "y" * 2000}},
                             headers=small.auth("alice"))
    assert resp.status_code == 413 and _fields(resp) == ["input"]
    assert small.client.post("/v1/jobs", json={"model": "a/b", "input": {"x": "y" * 500}},
                             headers=small.auth("alice")).status_code == 202


def test_hardening_intake_list_leaves_large_inputs_out_unless_asked(sqlite_api: Api) -> None:
    api = sqlite_api
    small = api.create(payload={"model": "a/b", "input": {"prompt": "small", "api_key": FAKE}})
    created = api.create(payload={"model": "a/b", "input": {"prompt": "p" * 50_000, "api_key": FAKE}})
    page = api.client.get("/v1/jobs", headers=api.auth("alice"))
    assert page.status_code == 200 and len(page.content) < 10_000
    big, little = page.json()["jobs"]
    assert big["id"] == created["id"] and big["input"] is None and big["input_omitted"] is True
    assert little["id"] == small["id"] and little["input"] == {"prompt": "small", "api_key": "***"}
    assert little["input_omitted"] is False
    full = api.client.get("/v1/jobs", params={"include": "input"}, headers=api.auth("alice")).json()["jobs"][0]
    assert full["input"] == {"prompt": "p" * 50_000, "api_key": "***"} and full["input_omitted"] is False
    one = api.client.get(f"/v1/jobs/{created['id']}", headers=api.auth("alice")).json()
    assert one["input"]["prompt"] == "p" * 50_000
    bad = api.client.get("/v1/jobs", params={"include": "nope"}, headers=api.auth("alice"))
    assert bad.status_code == 422


# ---- finding 4: secret fields at any depth, any case -------------------------------------------------

def test_hardening_intake_nested_and_uppercase_secrets_are_sealed(api: Api) -> None:
    raw_input = {"prompt": "p", "API_KEY": "sk_fake_upper", "options": {"Api_Key": "sk_fake_nested", "steps": 4},
                 "tools": [{"name": "t", "api_key": "sk_fake_in_list"}, "plain"]}
    resp = api.client.post("/v1/jobs", json={"model": "a/b", "input": raw_input}, headers=api.auth("alice"))
    assert resp.status_code == 202, resp.text
    for s in ("sk_fake_upper", "sk_fake_nested", "sk_fake_in_list"):
        assert s not in resp.text
    assert resp.json()["input"] == {"prompt": "p", "API_KEY": "***", "options": {"Api_Key": "***", "steps": 4},
                                    "tools": [{"name": "t", "api_key": "***"}, "plain"]}
    row = api.job(resp.json()["id"])
    stored = json.dumps(row.input_public) + json.dumps(row.secret_names)
    for s in ("sk_fake_upper", "sk_fake_nested", "sk_fake_in_list"):
        assert s not in stored
    # What the worker does to build the create body restores every secret at its place.
    cipher = api.app.state.intake._cipher
    assert {**row.input_public, **decrypt_secrets(cipher, row.input_sealed)} == raw_input
    got = api.client.get(f"/v1/jobs/{row.id}", headers=api.auth("alice"))
    assert got.json()["input"] == resp.json()["input"]


# ---- finding 5: the idempotency hash holds no secret ------------------------------------------------

def test_hardening_intake_request_hash_holds_no_secret(api: Api) -> None:
    headers = {**api.auth("alice"), "Idempotency-Key": "hash-1"}
    payload = {"model": "a/b", "input": {"prompt": "p", "api_key": FAKE}}
    first = api.client.post("/v1/jobs", json=payload, headers=headers)
    assert first.status_code == 202
    row = api.job(first.json()["id"])
    # The old scheme: sha256 over the body with the plaintext secret, confirmable offline.
    with_secret = hashlib.sha256(json.dumps([payload], sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert row.request_hash and row.request_hash != with_secret
    # Offline guessing: the hash does not change with the secret, so it cannot confirm a guess.
    other = {"model": "a/b", "input": {"prompt": "p", "api_key": "sk_fake_other"}}
    again = api.client.post("/v1/jobs", json=payload, headers=headers)
    assert again.status_code == 202 and again.json()["id"] == first.json()["id"]
    swapped = api.client.post("/v1/jobs", json=other, headers=headers)
    assert swapped.status_code == 202 and swapped.json()["id"] == first.json()["id"]
    assert no_secret(swapped.text) and FAKE not in swapped.text
    changed = api.client.post("/v1/jobs", json={"model": "a/b", "input": {"prompt": "q", "api_key": FAKE}},
                              headers=headers)
    assert changed.status_code == 409
    assert api.count_jobs() == 1
