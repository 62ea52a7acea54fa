"""Fuzz the HTTP API from its own OpenAPI schema (schemathesis 4): every operation, valid and invalid
data (positive and negative generation modes), an admin key, the real
app on a real SQLite file, real Redis (a private server), the real Celery producer and file storage.
Passes when every request is answered within 10 s, no answer is a 5xx, and every 4xx has the standard
error body (`{"error": {"code", "message", "fields"}}`).

A third pass takes valid requests and poisons every string in them (path, query, JSON body, keys and
values): NUL bytes, lone surrogates in the JSON body (as `\\ud800` escapes), invalid UTF-8 in the URL
(`%ED%A0%80`, `%FF`). Hypothesis' own strings never hold a surrogate, so without it the fuzzing would
never send one.

Bounded for CI: GENQUEUE_FUZZ_EXAMPLES (default 25) examples per operation and generation mode. A longer run:

    GENQUEUE_FUZZ_EXAMPLES=500 GENQUEUE_FUZZ_REPORT=/tmp/fuzz.json \\
        .venv/bin/pytest tests/security/test_fuzz_api.py -q -s --timeout=0
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.generation.modes import GenerationMode
from sec_support import SecApi, build_api, job_body

from tests.conftest import redis_base

EXAMPLES = int(os.environ.get("GENQUEUE_FUZZ_EXAMPLES", "25"))
TALLY: dict[str, Counter[int]] = {}
SERVER_ERRORS: list[str] = []
FAILURES: list[str] = []
UNSATISFIABLE: list[str] = []
NO_FIELDS: list[str] = []
ANSWER_WITHIN = 10.0


@pytest.fixture(scope="module")
def fuzz_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecApi]:
    tmp = tmp_path_factory.mktemp("fuzz")
    api, close = build_api(f"sqlite:///{tmp}/fuzz.db", f"{redis_base()}/15", tmp,
                           GENQUEUE_API_RATE_PER_MIN=100_000_000,
                           # A configured (obviously fake) signing secret, so the webhook route is fuzzed
                           # for what it answers bad signatures, not for "secret unavailable" (503).
                           GENQUEUE_WEBHOOK_SECRET="whsec_" + "ZmFrZS1mdXp6LXNlY3JldC1ub3QtcmVhbA==")
    # Some data to find: jobs of the admin key and of another key.
    for who in ("admin", "alice"):
        r = api.client.post("/v1/jobs", json=job_body(), headers=api.auth(who))
        assert r.status_code == 202, r.text
    try:
        yield api
    finally:
        close()
        _report()


@pytest.fixture(scope="module")
def fuzz_schema(fuzz_api: SecApi) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", fuzz_api.app)


def _report() -> None:
    total = sum(sum(c.values()) for c in TALLY.values())
    figures = {"examples_per_operation_and_mode": EXAMPLES, "requests": total, "operations": len(TALLY),
               "by_operation": {op: dict(sorted(c.items())) for op, c in sorted(TALLY.items())},
               "server_errors": len(SERVER_ERRORS), "failures": FAILURES,
               "no_cases_possible": UNSATISFIABLE, "4xx_without_fields": len(NO_FIELDS),
               "4xx_without_fields_examples": sorted(set(NO_FIELDS))[:5]}
    print("\nfuzz figures:", json.dumps(figures, indent=1))
    out = os.environ.get("GENQUEUE_FUZZ_REPORT")
    if out:
        Path(out).write_text(json.dumps(figures, indent=1))


def _check(case: Any, fuzz_api: SecApi, label: str) -> None:
    try:
        response = case.call(headers=fuzz_api.auth("admin"), timeout=ANSWER_WITHIN)
    except requests.exceptions.Timeout:
        SERVER_ERRORS.append(f"{label}: no answer within {ANSWER_WITHIN}s: {case.as_curl_command()}")
        raise AssertionError(f"no answer within {ANSWER_WITHIN}s: {case.as_curl_command()}") from None
    _verify(response.status_code, response.text, label, case.as_curl_command())


def _verify(status: int, text: str, label: str, how: str) -> None:
    TALLY.setdefault(label, Counter())[status] += 1
    if status >= 500:
        SERVER_ERRORS.append(f"{label}: {status} {text[:300]}")
    assert status < 500, (status, text[:500], how)
    if status >= 400:
        body = json.loads(text)
        where = (body, how)
        assert set(body) == {"error"}, where
        assert body["error"]["code"] and body["error"]["message"], where
        if status in (400, 422) and not body["error"]["fields"]:
            # Known gap, asserted in test_access.py::test_unparsable_body_error_names_the_body_and_reason.
            NO_FIELDS.append(f"{label}: {body['error']['message']}")
        assert all(f["field"] and f["reason"] for f in body["error"]["fields"]), where


def _fuzz(op: Any, mode: GenerationMode, fuzz_api: SecApi, label: str) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck),
              phases=[Phase.explicit, Phase.generate])  # no shrinking: report the first failure
    @given(case=op.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        _check(case, fuzz_api, label)

    run()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"])
def test_api_never_answers_5xx(fuzz_schema: Any, fuzz_api: SecApi, mode: GenerationMode) -> None:
    """Every operation of the schema, EXAMPLES generated requests each (schemathesis' fuzzing phase
    driven by Hypothesis directly: its pytest loader does not run under pytest 9)."""
    failures: list[str] = []
    operations = [r.ok() for r in fuzz_schema.get_all_operations()]
    assert len(operations) >= 6
    for op in operations:
        label = f"{op.method.upper()} {op.path}"
        try:
            _fuzz(op, mode, fuzz_api, label)
        except Unsatisfiable:
            UNSATISFIABLE.append(f"{mode.value} {label}")  # e.g. no invalid request exists for /healthz
        except Exception as exc:  # an assertion, or an exception the app raised (a 500 in production)
            failures.append(f"{mode.value} {label}: {type(exc).__name__}: {str(exc)[:800]}")
    FAILURES.extend(failures)
    assert failures == [], "\n".join(failures)


# What each kind of place can carry: a URL has no room for a lone surrogate (it is UTF-8 bytes), so it
# gets the bytes a surrogate would be ("%ED%A0%80") and a byte that is no UTF-8 at all ("%FF").
URL_POISON = ["\x00", "a\x00b", "%ED%A0%80", "%FF", "x%00"]
JSON_POISON = ["\x00", "\ud800", "x\udfff", "\ud83d\x00", "ok\u0000\ud800"]


def _poisoned(value: Any, poison: str) -> Any:
    if isinstance(value, str):
        return value + poison
    if isinstance(value, list):
        return [_poisoned(v, poison) for v in value]
    if isinstance(value, dict):
        return {(k + poison if i == 0 else k): _poisoned(v, poison) for i, (k, v) in enumerate(value.items())}
    return value


@pytest.mark.parametrize("where", ["url", "body"])
def test_api_never_answers_5xx_to_nul_bytes_or_invalid_unicode(fuzz_schema: Any, fuzz_api: SecApi,
                                                                where: str) -> None:
    failures: list[str] = []
    for op in (r.ok() for r in fuzz_schema.get_all_operations()):
        label = f"{op.method.upper()} {op.path}"
        if where == "body" and op.method.upper() not in ("POST", "PUT", "PATCH"):
            continue

        @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck),
                  phases=[Phase.explicit, Phase.generate])
        @given(case=op.as_strategy(generation_mode=GenerationMode.POSITIVE),
               poison=st.sampled_from(URL_POISON if where == "url" else JSON_POISON))
        def run(case: Any, poison: str) -> None:
            if where == "url":
                # Names stay (the route must match); every value, numbers included, gets the poison.
                case.path_parameters = {k: f"{v}{poison}" for k, v in (case.path_parameters or {}).items()}
                case.query = {k: f"{v}{poison}" for k, v in (case.query or {}).items()} or {"model": poison}
                _check(case, fuzz_api, f"{label} ({where} poisoned)")
                return
            # Sent as ASCII JSON, so a lone surrogate travels as its \\ud800 escape (the way a client in
            # any language can send one); schemathesis' own serializer cannot encode it.
            given_body = case.body if isinstance(case.body, dict | list | str) else {"x": "y"}  # none in the schema
            body = json.dumps(_poisoned(given_body, poison)).encode()
            response = fuzz_api.client.request(
                case.method, case.formatted_path, params=case.query, content=body,
                headers={**fuzz_api.auth("admin"), "content-type": "application/json"})
            _verify(response.status_code, response.text, f"{label} ({where} poisoned)", body[:300].decode())

        try:
            run()
        except Unsatisfiable:
            UNSATISFIABLE.append(f"poisoned {where} {label}")
        except Exception as exc:
            failures.append(f"poisoned {where} {label}: {type(exc).__name__}: {str(exc)[:800]}")
    FAILURES.extend(failures)
    assert failures == [], "\n".join(failures)
