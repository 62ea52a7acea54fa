"""Intake hardening, pure parts: redaction by value, sealing at any depth, the secret-free request hash."""

from __future__ import annotations

import contextvars
import io
import json
import logging
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet

from genqueue.core.crypto import decrypt_secrets, encrypt_secrets, load_cipher, masked_input, split_input
from genqueue.core.logs import RedactingFilter
from genqueue.intake import JobRequest
from genqueue.intake.service import request_hash
from genqueue.worker.replicate.client import ReplicateClient
from genqueue.worker.replicate.errors import PermanentError

# Obviously fake values, shaped to slip past a field-name regex: a quote, a comma, a space.
ODD = ['sk_fake_"quoted', "sk_fake_comma,after", "sk fake with spaces", "tok_fake_plain"]


def _sealed(values: dict[str, object], tmp_path: Path) -> tuple[object, str]:
    cipher = load_cipher(Fernet.generate_key().decode(), tmp_path)
    token = encrypt_secrets(cipher, values)
    assert token is not None
    return cipher, token


def _logged(fn: object) -> str:
    """What a handler set up like `setup_logging`'s writes while `fn` logs."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("genqueue.test_hardening")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        fn(logger)  # type: ignore[operator]
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_hardening_intake_decrypted_secrets_never_reach_logs(tmp_path: Path) -> None:
    def run() -> str:
        cipher, token = _sealed({"api_key": ODD[0], "token": ODD[3], "options": {"k": ODD[1]}}, tmp_path)
        # The secrets of a sealed token are exactly what is redacted once it is opened.
        opened = decrypt_secrets(cipher, token)  # type: ignore[arg-type]
        opened["other"] = ODD[2]

        def emit(logger: logging.Logger) -> None:
            logger.info("create body %s", json.dumps(opened))
            logger.warning("refused: token=%s key=%r", ODD[3], ODD[0])
            try:
                raise ValueError(f"upstream said {ODD[1]} / {ODD[0]}")
            except ValueError:
                logger.exception("step failed")
        return _logged(emit)

    out = contextvars.copy_context().run(run)
    assert "create body" in out and "step failed" in out and "ValueError" in out
    for secret in (ODD[0], ODD[1], ODD[3], json.dumps(ODD[0])[1:-1], "sk_fake_", "tok_fake_plain"):
        assert secret not in out, (secret, out)
    # ODD[2] was never sealed: only the job's actual secrets are masked, not every string.
    assert ODD[2] in out


def test_hardening_intake_replicate_error_text_is_scrubbed(tmp_path: Path) -> None:
    def run() -> PermanentError:
        cipher, token = _sealed({"token": ODD[1]}, tmp_path)
        decrypt_secrets(cipher, token)  # type: ignore[arg-type]

        def answer(request: httpx.Request) -> httpx.Response:
            return httpx.Response(422, json={"title": "Invalid input", "detail": f"token {ODD[1]} is invalid",
                                             "invalid_fields": [{"field": "token", "value": ODD[1]}]})

        http = httpx.Client(transport=httpx.MockTransport(answer), base_url="https://api.replicate.test/v1")
        client = ReplicateClient(http, "https://api.replicate.test/v1")
        with pytest.raises(PermanentError) as info:
            client.create(model="a/b", input={"token": ODD[1]})
        return info.value

    exc = contextvars.copy_context().run(run)
    text = str(exc) + repr(exc.args) + str(exc.detail) + json.dumps(exc.invalid_fields)
    assert "is invalid" in text and ODD[1] not in text and "sk_fake_comma" not in text


def test_hardening_intake_split_seals_any_depth_any_case() -> None:
    payload = {"prompt": "p", "API_KEY": "sk_fake_1", "opts": {"Token": "sk_fake_2", "n": 1},
               "list": [{"api_key": "sk_fake_3"}, 2], "plain": {"n": 2}}
    public, secret = split_input(payload, frozenset({"api_key", "token"}))
    assert "sk_fake" not in json.dumps(public)
    assert {**public, **secret} == payload  # the worker's merge puts each secret back at its place
    assert set(secret) == {"API_KEY", "opts", "list"}


def test_hardening_intake_masked_input_at_paths() -> None:
    public = {"prompt": "p", "opts": {"n": 1}, "list": [{}, 2]}
    assert masked_input(public, ["API_KEY", ["opts", "Token"], ["list", 0, "api_key"]]) == {
        "prompt": "p", "API_KEY": "***", "opts": {"n": 1, "Token": "***"}, "list": [{"api_key": "***"}, 2]}
    assert public == {"prompt": "p", "opts": {"n": 1}, "list": [{}, 2]}  # not modified


def test_hardening_intake_request_hash_ignores_secret_values() -> None:
    fields = frozenset({"api_key"})
    a = JobRequest(model="a/b", input={"prompt": "p", "api_key": "sk_fake_a", "o": {"API_KEY": "sk_fake_x"}})
    b = JobRequest(model="a/b", input={"prompt": "p", "api_key": "sk_fake_b", "o": {"API_KEY": "sk_fake_y"}})
    c = JobRequest(model="a/b", input={"prompt": "q", "api_key": "sk_fake_a", "o": {"API_KEY": "sk_fake_x"}})
    assert request_hash([a], fields) == request_hash([a], fields) == request_hash([b], fields)
    assert request_hash([a], fields) != request_hash([c], fields)
