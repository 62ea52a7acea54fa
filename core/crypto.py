"""Encryption of secret input fields at rest (Fernet, with key rotation) and their masking.

Secret fields (default `api_key`) are split off a job's input before it is stored: the public part is
kept as JSON, the secret part as one Fernet token. Only the submit step decrypts, in memory.

A secret field is any object key whose name matches one of the secret field names case-insensitively,
at any depth (inside nested objects and lists). The public part is the input without those keys; the
sealed part maps each top-level key that is or holds a secret to its whole original value, so the
worker's `{**public, **opened}` puts every secret back at its place. When every sealed key is itself a
secret field (the usual `api_key` case), the token holds that plain mapping, as it always did; otherwise
it is an envelope that also lists the secret strings, so only those are masked in logs once opened.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from genqueue.core.logs import register_secrets

MASK = "***"
_ENVELOPE = "__genqueue_sealed__"  # marks the envelope form of a token (see the module docstring)

# Where a secret sits in an input: a top-level name is kept as a plain string (what secret_names always
# held), a nested place as its list of keys and list indices, e.g. ["options", "api_key"].
SecretPath = str | list[str | int]


class SecretsError(Exception):
    pass


KEY_FILE = "secrets.key"  # in GENQUEUE_DATA_DIR, when SECRETS_KEY is not set


def load_cipher(keys: str | None, data_dir: Path) -> MultiFernet:
    """Keys come from SECRETS_KEY (comma-separated, first encrypts), else from data_dir/secrets.key.

    A missing key is an error, never replaced: a process started with another data dir used to make a
    new key, and every queued job then failed `secrets_unavailable`. The key file is written only by
    `write_key_file`, which `genqueue migrate` calls on a database that holds no sealed secrets."""
    if keys:
        try:
            return MultiFernet([Fernet(k.strip().encode()) for k in keys.split(",") if k.strip()])
        except (ValueError, TypeError):
            raise SecretsError("SECRETS_KEY must be comma-separated Fernet keys (see the README)") from None
    path = data_dir / KEY_FILE
    try:
        return MultiFernet([Fernet(path.read_bytes().strip())])
    except FileNotFoundError:
        raise SecretsError(f"no secrets key: set SECRETS_KEY, or run `genqueue migrate` once on a new "
                           f"database (it writes {path})") from None
    except (ValueError, TypeError):
        raise SecretsError(f"{path} does not hold a Fernet key") from None


def write_key_file(data_dir: Path) -> Path:
    """Write a new key to data_dir/secrets.key (owner-only); FileExistsError if one is there."""
    path = data_dir / KEY_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(Fernet.generate_key())
    return path


def opens(cipher: MultiFernet, token: str) -> bool:
    """Whether one of the cipher's keys opens `token` (nothing is registered for log masking)."""
    try:
        cipher.decrypt(token.encode())
    except InvalidToken:
        return False
    return True


def normalize_fields(secret_fields: frozenset[str]) -> frozenset[str]:
    return frozenset(f.casefold() for f in secret_fields)


@dataclass(frozen=True, slots=True)
class Split:
    public: dict[str, Any]  # the input without its secret keys
    sealed: dict[str, Any]  # top-level key -> whole original value, for each key that is or holds a secret
    paths: list[SecretPath]  # where the secrets were, in input order
    values: list[Any]  # the secret values themselves

    @property
    def only_top_level(self) -> bool:
        return all(isinstance(p, str) for p in self.paths)


def _strip(value: Any, fields: frozenset[str], path: list[str | int], found: list[tuple[list[str | int], Any]]) -> Any:
    """`value` without secret keys at any depth (a copy only where something was removed)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if isinstance(k, str) and k.casefold() in fields:
                found.append(([*path, k], v))
            else:
                out[k] = _strip(v, fields, [*path, k], found)
        return out
    if isinstance(value, list):
        return [_strip(v, fields, [*path, i], found) for i, v in enumerate(value)]
    return value


def split_secrets(payload: dict[str, Any], secret_fields: frozenset[str]) -> Split:
    """Split the secrets off an input. `secret_fields` are matched case-insensitively at any depth."""
    fields = normalize_fields(secret_fields)
    public: dict[str, Any] = {}
    sealed: dict[str, Any] = {}
    paths: list[SecretPath] = []
    values: list[Any] = []
    for key, value in payload.items():
        if key.casefold() in fields:
            sealed[key] = value
            paths.append(key)
            values.append(value)
            continue
        if not isinstance(value, dict | list):  # the common case: a plain top-level value
            public[key] = value
            continue
        found: list[tuple[list[str | int], Any]] = []
        public[key] = _strip(value, fields, [key], found)
        if found:
            sealed[key] = value
            paths += [p for p, _ in found]
            values += [v for _, v in found]
    return Split(public, sealed, paths, values)


def split_input(payload: dict[str, Any], secret_fields: frozenset[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    split = split_secrets(payload, secret_fields)
    return split.public, split.sealed


def secret_strings(value: Any) -> Iterator[str]:
    """Every string inside a secret value (a secret may be an object or a list), numbers as text."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int | float):
        yield str(value)
    elif isinstance(value, dict):
        for v in value.values():
            yield from secret_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from secret_strings(v)


def encrypt_secrets(cipher: MultiFernet, secret: dict[str, Any], split: Split | None = None) -> str | None:
    """Seal `secret` (a `Split.sealed`). Given the split and some secret nested, the envelope form is
    written so that opening it knows which strings are secret (the sealed values also hold public ones)."""
    if not secret:
        return None
    body: dict[str, Any] = secret
    if split is not None and not split.only_top_level:
        body = {_ENVELOPE: 2, "input": secret, "secrets": [s for v in split.values for s in secret_strings(v)]}
    return cipher.encrypt(json.dumps(body).encode()).decode()


def decrypt_secrets(cipher: MultiFernet, token: str | None) -> dict[str, Any]:
    """The sealed part of an input, to merge over the public part. Its secret strings are registered
    for log masking (`core.logs`) in this context: whoever opens them is about to use them."""
    if not token:
        return {}
    try:
        value = json.loads(cipher.decrypt(token.encode()))
    except InvalidToken:
        raise SecretsError("cannot decrypt job secrets: no SECRETS_KEY key matches") from None
    if not isinstance(value, dict):
        raise SecretsError("job secrets are not an object")
    if _ENVELOPE in value:
        sealed, secrets = value.get("input"), value.get("secrets")
        if not isinstance(sealed, dict) or not isinstance(secrets, list):
            raise SecretsError("job secrets are malformed")
        register_secrets(s for s in secrets if isinstance(s, str))
        return sealed
    register_secrets(secret_strings(value))  # the plain form holds nothing but secrets
    return value


def rotate(cipher: MultiFernet, token: str | None) -> str | None:
    """Re-encrypt with the first (newest) key."""
    return cipher.rotate(token.encode()).decode() if token else None


def _masked_at(value: Any, path: Sequence[str | int]) -> Any:
    """A copy of `value` with MASK at `path` (its last step is always an object key); a path that no
    longer fits the value is ignored (masking must never fail a read)."""
    head, rest = path[0], path[1:]
    if isinstance(value, dict) and isinstance(head, str) and (head in value or not rest):
        out = dict(value)
        out[head] = _masked_at(out[head], rest) if rest else MASK
        return out
    if isinstance(value, list) and isinstance(head, int) and 0 <= head < len(value) and rest:
        items = list(value)
        items[head] = _masked_at(items[head], rest)
        return items
    return value


def masked_input(public: dict[str, Any], secret_names: Sequence[SecretPath]) -> dict[str, Any]:
    out = dict(public)
    for name in secret_names:
        if isinstance(name, str):
            out[name] = MASK
        elif name:
            out = _masked_at(out, name)
    return out
