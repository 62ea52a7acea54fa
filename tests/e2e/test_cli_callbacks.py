"""`genqueue keys create --callback-url` and `keys rotate-callback-secret`: the signing secret is printed
once (the key stays the last line), stored only sealed, and a rotation replaces it; a bad URL is one
clear line."""

from __future__ import annotations

from pathlib import Path

import pytest
from e2e_support import clean_env, describe, run_cli
from sqlalchemy import create_engine, text

from genqueue.core.crypto import load_cipher
from genqueue.models.keys import open_callback_secret


@pytest.fixture
def cli_env(tmp_path: Path, redis_url: str) -> dict[str, str]:
    return clean_env(GENQUEUE_DATA_DIR=str(tmp_path / "data"), DATABASE_URL=f"sqlite:///{tmp_path}/gq.db",
                     REDIS_URL=redis_url)


def _sealed(tmp_path: Path) -> tuple[str | None, str]:
    engine = create_engine(f"sqlite:///{tmp_path}/gq.db")
    with engine.connect() as conn:
        row = conn.execute(text("SELECT callback_url, callback_secret_sealed FROM api_keys")).one()
        dump = " ".join(str(r) for r in conn.execute(text("SELECT * FROM api_keys")).all())
    engine.dispose()
    return row.callback_url, row.callback_secret_sealed + " | " + dump


def test_keys_create_with_callback_url_and_rotate_the_secret(tmp_path: Path, cli_env: dict[str, str]) -> None:
    assert run_cli("migrate", env=cli_env, cwd=tmp_path).returncode == 0
    created = run_cli("keys", "create", "--name", "svc", "--callback-url", "https://hooks.example.com/cb",
                      env=cli_env, cwd=tmp_path)
    assert created.returncode == 0, describe(created)
    lines = created.stdout.strip().splitlines()
    assert lines[-1].startswith("gq_")  # the key is still the last line
    secret = lines[-2].rsplit(" ", 1)[-1]
    assert secret.startswith("whsec_")
    url, stored = _sealed(tmp_path)
    sealed = stored.split(" | ")[0]
    assert url == "https://hooks.example.com/cb"
    assert secret not in stored and secret.removeprefix("whsec_") not in stored
    cipher = load_cipher(None, tmp_path / "data")
    assert open_callback_secret(cipher, sealed) == secret

    key_id = run_cli("keys", "list", env=cli_env, cwd=tmp_path).stdout.split()[0]
    rotated = run_cli("keys", "rotate-callback-secret", key_id, env=cli_env, cwd=tmp_path)
    assert rotated.returncode == 0, describe(rotated)
    new = rotated.stdout.strip().splitlines()[-1]
    assert new.startswith("whsec_") and new != secret
    _, stored = _sealed(tmp_path)
    assert open_callback_secret(cipher, stored.split(" | ")[0]) == new and new not in stored

    missing = run_cli("keys", "rotate-callback-secret", "nope", env=cli_env, cwd=tmp_path)
    assert missing.returncode == 1 and "no active key" in missing.stderr
    bad = run_cli("keys", "create", "--name", "x", "--callback-url", "http://127.0.0.1/cb", env=cli_env, cwd=tmp_path)
    assert bad.returncode == 2 and "--callback-url must not be a loopback or private address" in bad.stderr
    assert "Traceback" not in bad.stderr
