"""Encryption of secret input fields at rest (Fernet, with key rotation) and their masking.

Secret fields (default `api_key`) are split off a job's input before it is stored: the public part is
kept as JSON, the secret part as one Fernet token. Only the submit step decrypts, in memory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

MASK = "***"


class SecretsError(Exception):
    pass


def load_cipher(keys: str | None, data_dir: Path) -> MultiFernet:
    """Keys come from SECRETS_KEY (comma-separated, first encrypts); else one generated in data_dir."""
    if keys:
        try:
            return MultiFernet([Fernet(k.strip().encode()) for k in keys.split(",") if k.strip()])
        except (ValueError, TypeError):
            raise SecretsError("SECRETS_KEY must be comma-separated Fernet keys (see the README)") from None
    path = data_dir / "secrets.key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(Fernet.generate_key())
    return MultiFernet([Fernet(path.read_bytes().strip())])


def split_input(payload: dict[str, Any], secret_fields: frozenset[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    public = {k: v for k, v in payload.items() if k not in secret_fields}
    secret = {k: v for k, v in payload.items() if k in secret_fields}
    return public, secret


def encrypt_secrets(cipher: MultiFernet, secret: dict[str, Any]) -> str | None:
    if not secret:
        return None
    return cipher.encrypt(json.dumps(secret).encode()).decode()


def decrypt_secrets(cipher: MultiFernet, token: str | None) -> dict[str, Any]:
    if not token:
        return {}
    try:
        value = json.loads(cipher.decrypt(token.encode()))
    except InvalidToken:
        raise SecretsError("cannot decrypt job secrets: no SECRETS_KEY key matches") from None
    if not isinstance(value, dict):
        raise SecretsError("job secrets are not an object")
    return value


def rotate(cipher: MultiFernet, token: str | None) -> str | None:
    """Re-encrypt with the first (newest) key."""
    return cipher.rotate(token.encode()).decode() if token else None


def masked_input(public: dict[str, Any], secret_names: list[str]) -> dict[str, Any]:
    out = dict(public)
    for name in secret_names:
        out[name] = MASK
    return out
