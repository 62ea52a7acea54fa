"""The one settings object: every environment variable genqueue reads is declared here.

Nothing else in the code base reads the environment; entry points call `load_settings()` once and
pass the object down.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from genqueue.core.pricing import PriceTable, load_price_table

REPLICATE_DEFAULT_BASE_URL = "https://api.replicate.com/v1"

log = logging.getLogger(__name__)

# Variables earlier versions read, and why they are gone: each still set gets one warning at start-up.
REMOVED = {
    "GENQUEUE_REPLICATE_TIMEOUT": "Replicate calls time out after 30 s",
    "GENQUEUE_POLL_INITIAL_DELAY": "the first poll is at the model's observed finish time (else after 1 s)",
    "GENQUEUE_POLL_MAX_DELAY": "polls back off x1.25 up to 30 s",
    "GENQUEUE_CREATE_WAIT": "Prefer: wait is automatic for models observed to finish within 5 s, on "
                            "`genqueue worker --pool threads`",
    "GENQUEUE_CREATE_WAIT_AUTO": "Prefer: wait is automatic for models observed to finish within 5 s, on "
                                 "`genqueue worker --pool threads`",
    "GENQUEUE_POLL_BY_PAGE": "list-page refreshing was removed (webhooks are the way to spend no reads)",
    "GENQUEUE_WEBHOOK_POLL_INTERVAL": "with webhooks on, the safety-net poll comes every 90 s",
    "GENQUEUE_DB_POOL_SIZE": "each worker process keeps 2 SQL connections (--pool threads: one per thread, "
                             "at most 16)",
    "GENQUEUE_MAX_DELIVERIES": "a job whose step kills its worker 8 times fails as too_many_deliveries",
    "GENQUEUE_SWEEP_INTERVAL": "the sweeper runs every 2 s",
    "GENQUEUE_STUCK_AFTER": "a step 30 s overdue is considered lost and sent again",
    "GENQUEUE_EMBEDDED_REDIS": "`up` and `demo` start a Redis only when REDIS_URL is not set and none answers",
}


class ConfigError(Exception):
    """A missing or wrong setting; its message is one line meant for the operator."""


def _alias(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    # --- where things live -------------------------------------------------------------------
    data_dir: Path = Field(Path(".genqueue"), validation_alias=_alias("GENQUEUE_DATA_DIR"))
    database_url: str = Field("", validation_alias=_alias("DATABASE_URL"))
    redis_url: str = Field("redis://127.0.0.1:6379/0", validation_alias=_alias("REDIS_URL"))
    storage_url: str = Field("", validation_alias=_alias("STORAGE_URL"))
    s3_endpoint_url: str | None = Field(None, validation_alias=_alias("S3_ENDPOINT_URL"))
    aws_access_key_id: str | None = Field(None, validation_alias=_alias("AWS_ACCESS_KEY_ID"))
    aws_secret_access_key: SecretStr | None = Field(None, validation_alias=_alias("AWS_SECRET_ACCESS_KEY"))
    aws_region: str | None = Field(None, validation_alias=_alias("AWS_REGION", "AWS_DEFAULT_REGION"))

    # --- Replicate ---------------------------------------------------------------------------
    replicate_api_token: SecretStr | None = Field(None, validation_alias=_alias("REPLICATE_API_TOKEN"))
    replicate_base_url: str = Field(REPLICATE_DEFAULT_BASE_URL, validation_alias=_alias("REPLICATE_BASE_URL"))
    output_allowed_hosts: str = Field(
        "replicate.delivery,*.replicate.delivery", validation_alias=_alias("OUTPUT_ALLOWED_HOSTS")
    )
    # Loopback/private output hosts are refused (SSRF) unless this is set, e.g. for the local simulator.
    output_allow_private: bool = Field(False, validation_alias=_alias("OUTPUT_ALLOW_PRIVATE"))
    output_max_bytes: int = Field(50 * 1024 * 1024, gt=0, validation_alias=_alias("OUTPUT_MAX_BYTES"))

    # --- scheduling --------------------------------------------------------------------------
    # Optional caps on the fleet's Replicate budgets (requests/min). The budgets themselves are learned
    # from the account's answers (worker.budget); unset, Replicate's documented 600/3000 is the most spent.
    create_rate_per_min: int | None = Field(None, gt=0, validation_alias=_alias("GENQUEUE_CREATE_RATE_PER_MIN"))
    read_rate_per_min: int | None = Field(None, gt=0, validation_alias=_alias("GENQUEUE_READ_RATE_PER_MIN"))
    # Webhooks: the API's public base URL as Replicate should call it (https://genqueue.example.com).
    # When set, every create asks Replicate to POST the finished prediction to
    # <url>/v1/replicate/webhook?job=<id>; polls then become a safety net (below). Unset = poll only.
    webhook_url: str | None = Field(None, validation_alias=_alias("GENQUEUE_WEBHOOK_URL"))
    # The whsec_... signing secret; unset = fetched once from Replicate (GET /v1/webhooks/default/secret).
    webhook_secret: SecretStr | None = Field(None, validation_alias=_alias("GENQUEUE_WEBHOOK_SECRET"))
    # Callbacks (signed POSTs of a job to its callback_url): loopback/private destinations are refused
    # (SSRF) unless this is set; failed deliveries are retried after `first` seconds, doubling up to
    # `max`, for at least 24 h (worker/callbacks/schedule.py).
    callback_allow_private: bool = Field(
        False, validation_alias=_alias("GENQUEUE_CALLBACK_ALLOW_PRIVATE", "CALLBACK_ALLOW_PRIVATE"))
    callback_retry_first: float = Field(5.0, gt=0, le=3600, validation_alias=_alias("GENQUEUE_CALLBACK_RETRY_FIRST"))
    callback_retry_max: float = Field(3600.0, gt=0, le=6 * 3600,
                                      validation_alias=_alias("GENQUEUE_CALLBACK_RETRY_MAX"))
    job_deadline_seconds: float = Field(3600.0, gt=0, validation_alias=_alias("GENQUEUE_JOB_DEADLINE"))
    # Seconds of waiting that raise a queued job's priority by one level (genqueue.sched.plan).
    priority_aging: float = Field(300.0, ge=1, validation_alias=_alias("GENQUEUE_PRIORITY_AGING"))

    # --- security ----------------------------------------------------------------------------
    # Comma-separated Fernet keys; the first encrypts, all decrypt (rotation). Empty: a key file in data_dir.
    secrets_key: SecretStr | None = Field(None, validation_alias=_alias("SECRETS_KEY", "GENQUEUE_SECRETS_KEY"))
    secret_fields: str = Field("api_key", validation_alias=_alias("GENQUEUE_SECRET_FIELDS"))
    api_rate_per_min: int = Field(6000, gt=0, validation_alias=_alias("GENQUEUE_API_RATE_PER_MIN"))
    max_body_bytes: int = Field(4 * 1024 * 1024, gt=0, validation_alias=_alias("GENQUEUE_MAX_BODY_BYTES"))
    # `POST /v1/batches` only: its body is streamed (never held whole), so it may be far larger. 256 MiB
    # is 50,000 lines of 5 KiB; a line is also capped on its own (an input plus 64 KiB).
    max_batch_bytes: int = Field(256 * 1024 * 1024, gt=0, validation_alias=_alias("GENQUEUE_MAX_BATCH_BYTES"))

    # --- ops ---------------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", validation_alias=_alias("GENQUEUE_LOG_LEVEL", "LOG_LEVEL")
    )
    price_per_second: float = Field(0.0014, ge=0, validation_alias=_alias("GENQUEUE_PRICE_PER_SECOND"))
    # The per-model price table (JSON, core/pricing.py); models it does not name cost price_per_second.
    price_table_file: str | None = Field(None, validation_alias=_alias("GENQUEUE_PRICE_TABLE"))
    # Retention: outputs and inputs are deleted this many days after the job was created (a key's or
    # a job's own `retention_days` wins), by the sweeper.
    retention_days: int = Field(30, ge=0, le=36500, validation_alias=_alias("GENQUEUE_RETENTION_DAYS"))
    # A failed or canceled job keeps its sealed secrets this many seconds after it ended (a replay
    # re-sends them); a succeeded job drops them in the compare-and-set that makes it succeed.
    replay_window: float = Field(86400.0, ge=0, validation_alias=_alias("GENQUEUE_REPLAY_WINDOW"))

    def prices(self) -> PriceTable:
        """The price table (read once per process and path; the file was checked at start-up)."""
        return _price_table(self.price_table_file, self.price_per_second)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, v: object) -> object:
        return v.upper() if isinstance(v, str) else v

    @field_validator("create_rate_per_min", "read_rate_per_min", mode="before")
    @classmethod
    def _no_cap(cls, v: object) -> object:
        return None if isinstance(v, str) and not v.strip() else v  # set but empty: no cap

    @field_validator("price_table_file")
    @classmethod
    def _price_table_file(cls, v: str | None) -> str | None:
        if not v or not v.strip():
            return None
        load_price_table(v, 0.0)  # a ValueError names the bad entry; start-up stops on it
        return v

    @field_validator("replicate_base_url")
    @classmethod
    def _base_url(cls, v: str) -> str:
        v = v.rstrip("/")
        if not v.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL ending in /v1")
        if not v.endswith("/v1"):
            raise ValueError("must end with /v1, e.g. https://api.replicate.com/v1")
        return v

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, v: str | None) -> str | None:
        if not v:
            return None
        v = v.rstrip("/")
        if not v.startswith(("http://", "https://")) or "?" in v or "#" in v:
            raise ValueError("must be the API's base URL, e.g. https://genqueue.example.com")
        return v

    @field_validator("database_url")
    @classmethod
    def _db_url(cls, v: str) -> str:
        if v and not v.startswith(("sqlite", "postgresql")):
            raise ValueError("must be sqlite:///path or postgresql+psycopg://user@host/db")
        if v.startswith("postgresql://") or v.startswith("postgres://"):
            # psycopg 3 is the driver we ship; plain postgresql:// would ask for psycopg2.
            return "postgresql+psycopg://" + v.split("://", 1)[1]
        return v

    @field_validator("storage_url")
    @classmethod
    def _storage_url(cls, v: str) -> str:
        if v and not v.startswith(("file://", "s3://", "/")):
            raise ValueError("must be file:///dir or s3://bucket/prefix")
        return v

    # --- derived values (kept here so every consumer derives them the same way) ---------------
    @property
    def create_budget_per_min(self) -> int:
        """The create budget the ops figures compare against: the cap, else Replicate's documented 600."""
        return self.create_rate_per_min if self.create_rate_per_min is not None else 600

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'genqueue.db').resolve()}"

    @property
    def effective_storage_url(self) -> str:
        return self.storage_url or f"file://{(self.data_dir / 'outputs').resolve()}"

    @property
    def allowed_hosts(self) -> list[str]:
        return [h.strip().lower() for h in self.output_allowed_hosts.split(",") if h.strip()]

    @property
    def max_input_bytes(self) -> int:
        """One job's input as compact JSON (413 above it), so no single job weighs on every read: a
        sixteenth of a request body (256 KiB by default), so a batch body holds at least 16 full inputs."""
        return self.max_body_bytes // 16

    @property
    def secret_field_names(self) -> frozenset[str]:
        return frozenset(f.strip() for f in self.secret_fields.split(",") if f.strip())

    @property
    def redis_url_given(self) -> bool:
        """Whether REDIS_URL was set (then nobody starts an embedded Redis in its place)."""
        return "redis_url" in self.model_fields_set

    @property
    def uses_real_replicate(self) -> bool:
        return self.replicate_base_url == REPLICATE_DEFAULT_BASE_URL

    def token(self) -> str:
        """The Replicate token; a clear error when it is needed and missing."""
        if self.replicate_api_token is None or not self.replicate_api_token.get_secret_value():
            raise ConfigError("REPLICATE_API_TOKEN is not set (needed to call Replicate)")
        return self.replicate_api_token.get_secret_value()


@functools.lru_cache(maxsize=4)
def _price_table(path: str | None, default_per_second: float) -> PriceTable:
    return load_price_table(path, default_per_second)


def _warn_removed(overrides: dict[str, object]) -> None:
    names = {n.upper() for n in os.environ} | {n.upper() for n in overrides}
    env_file = overrides.get("_env_file", ".env")
    if isinstance(env_file, str | Path) and Path(env_file).is_file():
        from dotenv import dotenv_values

        names |= {n.upper() for n in dotenv_values(env_file)}
    for name in sorted(names & REMOVED.keys()):
        log.warning("%s is set but no longer read: %s", name, REMOVED[name])


def load_settings(**overrides: object) -> Settings:
    """Build the settings from the environment (and .env); a bad value becomes one ConfigError line."""
    _warn_removed(overrides)
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        parts = []
        for err in exc.errors():
            loc = err.get("loc") or ("?",)
            name = str(loc[0]).upper()
            parts.append(f"{name}: {err.get('msg')}")
        raise ConfigError("invalid configuration: " + "; ".join(parts)) from None
