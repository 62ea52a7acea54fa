"""API keys: random, shown once, stored as sha256, compared in constant time, revocable. Each key also
has a callback signing secret (`whsec_...`): shown once, stored Fernet-sealed, rotatable."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import cast

from cryptography.fernet import MultiFernet
from sqlalchemy import Table, bindparam, select
from sqlalchemy.orm import Session

from genqueue.models.base import utcnow
from genqueue.models.tables import ApiKey

KEY_PREFIX = "gq_"
CALLBACK_SECRET_PREFIX = "whsec_"


class Role(StrEnum):
    SUBMIT = "submit"  # create and read its own jobs
    OPS = "ops"  # read everything, stats, metrics, dashboard
    ADMIN = "admin"  # ops + cancel any job + manage keys


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Limits:
    """A key's scheduling settings (genqueue.sched.plan): its share of the create budget against other
    keys with queued work, and its limits (None: none)."""

    weight: int = 1
    max_running: int | None = None
    max_queued: int | None = None
    # 0009: USD per spend_period ("day" | "month"; None: no cap), and the retention of its jobs in days.
    spend_limit: float | None = None
    spend_period: str | None = None
    retention_days: int | None = None


def create_key(session: Session, name: str, role: Role, limits: Limits | None = None) -> tuple[ApiKey, str]:
    limits = limits or Limits()
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(name=name, role=role.value, key_hash=hash_key(plaintext), prefix=plaintext[:10],
                 weight=limits.weight, max_running=limits.max_running, max_queued=limits.max_queued,
                 spend_limit=limits.spend_limit, spend_period=limits.spend_period if limits.spend_limit else None,
                 retention_days=limits.retention_days)
    session.add(key)
    session.flush()
    return key, plaintext


def new_callback_secret(cipher: MultiFernet) -> tuple[str, str]:
    """(the `whsec_...` secret to show once, its sealed form to store): 32 random bytes, base64, the
    Standard Webhooks secret format a receiver's verifier takes as is."""
    secret = CALLBACK_SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()
    return secret, cipher.encrypt(secret.encode()).decode()


def open_callback_secret(cipher: MultiFernet, sealed: str) -> str:
    """The signing secret in the clear, registered for log masking (whoever opens it signs with it);
    `cryptography.fernet.InvalidToken` when no SECRETS_KEY key opens it."""
    from genqueue.core.logs import register_secrets

    secret = cipher.decrypt(sealed.encode()).decode()
    register_secrets([secret])
    return secret


def find_key(session: Session, key_id_or_prefix: str) -> ApiKey | None:
    return session.scalar(
        select(ApiKey).where((ApiKey.id == key_id_or_prefix) | (ApiKey.prefix == key_id_or_prefix))
    )


def rotate_callback_secret(session: Session, key_id_or_prefix: str, cipher: MultiFernet) -> str | None:
    """A new signing secret for an active key (the old one stops signing at once), or None."""
    key = find_key(session, key_id_or_prefix)
    if key is None or key.revoked_at is not None:
        return None
    secret, key.callback_secret_sealed = new_callback_secret(cipher)
    return secret


UNSET = -1  # `update_limits`: clear a limit (back to none)


def update_limits(session: Session, key_id_or_prefix: str, *, weight: int | None = None,
                  max_running: int | None = None, max_queued: int | None = None,
                  spend_limit: float | None = None, spend_period: str | None = None,
                  retention_days: int | None = None) -> ApiKey | None:
    """Change what is given (a limit given as UNSET is cleared); the active key, or None."""
    key = find_key(session, key_id_or_prefix)
    if key is None or key.revoked_at is not None:
        return None
    if weight is not None:
        key.weight = weight
    if max_running is not None:
        key.max_running = None if max_running == UNSET else max_running
    if max_queued is not None:
        key.max_queued = None if max_queued == UNSET else max_queued
    if spend_limit is not None:
        key.spend_limit = None if spend_limit == UNSET else spend_limit
        key.spend_period = None if spend_limit == UNSET else (spend_period or key.spend_period or "day")
    elif spend_period is not None and key.spend_limit is not None:
        key.spend_period = spend_period
    if retention_days is not None:
        key.retention_days = None if retention_days == UNSET else retention_days
    return key


@dataclass(frozen=True, slots=True)
class ActiveKey:
    id: str
    name: str
    role: str
    callback_url: str | None = None
    can_sign: bool = False  # has a callback signing secret
    max_queued: int | None = None


_KEYS = cast(Table, ApiKey.__table__)
# A Core SELECT of the columns the API needs (run on every request): no ORM object is built.
_ACTIVE_BY_HASH = select(_KEYS.c.id, _KEYS.c.name, _KEYS.c.role, _KEYS.c.key_hash, _KEYS.c.max_queued,
                         _KEYS.c.callback_url, _KEYS.c.callback_secret_sealed.is_not(None).label("can_sign")).where(
    _KEYS.c.key_hash == bindparam("digest"), _KEYS.c.revoked_at.is_(None))


def find_active_key(session: Session, plaintext: str) -> ActiveKey | None:
    """The unrevoked key matching `plaintext`, or None: lookup by hash, then a constant-time compare."""
    digest = hash_key(plaintext)
    row = session.connection().execute(_ACTIVE_BY_HASH, {"digest": digest}).first()
    if row is None or not hmac.compare_digest(row.key_hash, digest):
        return None
    return ActiveKey(id=row.id, name=row.name, role=row.role, max_queued=row.max_queued,
                     callback_url=row.callback_url, can_sign=bool(row.can_sign))


def revoke_key(session: Session, key_id_or_prefix: str) -> bool:
    key = find_key(session, key_id_or_prefix)
    if key is None or key.revoked_at is not None:
        return False
    key.revoked_at = utcnow()
    return True


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at)))
