"""All knobs of the Replicate simulator, as one plain dataclass.

Build it with keyword arguments (``SimConfig(predict_seconds=0.2, fail_rate=0.1)``); change it at
runtime with :meth:`SimConfig.update` (what ``POST /_sim/config`` calls).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from genqueue.simulator.webhook_wire import secret_key

DEFAULT_TOKEN = "r8_sim_fake_token"
OUTPUT_MODES = ("url", "list", "data_uri")
# Knobs that must stay probabilities.
PROBABILITIES = (
    "fail_rate",
    "fault_429",
    "fault_5xx",
    "fault_drop",
    "fault_lost_create",
    "fault_slow",
    "fault_first_download",
    "webhook_fail_rate",
    "webhook_duplicate_rate",
)


# Named sets of rate-limit knobs (`preset` in `update`, `--preset` on the command line), from Replicate's
# documentation: 600 creates/min and 3000 other requests/min; an account short of credit may create
# only 6 a minute, with a burst of 1.
LIMIT_PRESETS: dict[str, dict[str, Any]] = {
    "normal": {"create_limit_per_min": 600.0, "create_burst": None, "read_limit_per_min": 3000.0,
               "read_burst": None, "rate_limit_enabled": True},
    "low_credit": {"create_limit_per_min": 6.0, "create_burst": 1.0, "read_limit_per_min": 3000.0,
                   "read_burst": None, "rate_limit_enabled": True},
}


@dataclass
class SimConfig:
    # --- auth -------------------------------------------------------------------------------
    tokens: set[str] = field(default_factory=lambda: {DEFAULT_TOKEN})
    """Accepted bearer tokens; an empty set accepts any token (a header is still required)."""
    admin_token: str | None = None
    """Bearer token for the ``/_sim/`` routes. Unset: they answer loopback clients only (the
    simulator's own machine: tests, the demo); set: every client must send it, loopback included."""
    accept_any_version: bool = False
    """Accept any 64-hex version id (model reported as ``sim/any``) besides the known ones."""
    public_base_url: str | None = None
    """Base for ``urls.get``, list cursors and output files; default: the request's base URL."""
    webhook_secret: str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    """Signs webhook deliveries (``GET /v1/webhooks/default/secret`` hands it out)."""

    # --- lifecycle (seconds) ----------------------------------------------------------------
    start_delay: float = 0.5
    """starting -> processing."""
    predict_seconds: float = 1.8
    """processing -> terminal."""
    jitter: float = 0.0
    """Uniform random extra 0..jitter seconds added to each of start_delay and predict_seconds."""
    fail_rate: float = 0.0
    """Probability that a prediction ends ``failed``."""
    max_run_seconds: float = 1800.0
    """A prediction running longer than this fails with a timeout error."""
    retention_seconds: float = 3600.0
    """After completion + this, input/output/logs are removed and files answer 404."""
    min_cancel_after: float = 5.0
    """Minimum accepted ``Cancel-After``; shorter values are raised to it."""
    max_wait: int = 60
    """Upper bound for ``Prefer: wait=N`` (bare ``wait`` means this)."""
    output_mode: str = "url"
    """jigsawstack output: "url" (one URL string), "list" (2 URLs) or "data_uri"."""

    # --- rate limits (token buckets, per API token; see ratelimit.py for the headers) -------------
    create_limit_per_min: float = 600.0
    read_limit_per_min: float = 3000.0
    create_burst: float | None = None
    """Bucket size for creates; default one minute's worth."""
    read_burst: float | None = None
    rate_limit_enabled: bool = True

    # --- faults (probabilities 0..1) --------------------------------------------------------
    seed: int | None = None
    """Seeds ids, jitter, failures and faults: same seed + same request order = same run."""
    fault_429: float = 0.0
    fault_5xx: float = 0.0
    fault_drop: float = 0.0
    fault_lost_create: float = 0.0
    fault_slow: float = 0.0
    slow_seconds: float = 2.0
    fault_first_download: float = 0.0

    # --- webhooks (see simulator/webhooks.py; only ``start`` and ``completed`` are sent) -------
    webhook_retry_seconds: float = 60.0
    """Window, from the first attempt, for retrying a ``completed`` delivery (0 = never retry)."""
    webhook_backoff_seconds: float = 1.0
    """First retry delay; it doubles per attempt (1, 2, 4, 8 ... s)."""
    webhook_timeout_seconds: float = 5.0
    """Per-attempt HTTP timeout; a timeout counts as a failed attempt."""
    webhook_fail_rate: float = 0.0
    """Probability that an attempt at ``completed`` is not sent but counted as failed (retry path)."""
    webhook_duplicate_rate: float = 0.0
    """Probability that a delivered ``completed`` event is sent once more with the same webhook-id."""

    def __post_init__(self) -> None:
        self.tokens = set(self.tokens)
        self.validate()

    def validate(self) -> None:
        for name in PROBABILITIES:
            value = getattr(self, name)
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{name} must be within 0..1, got {value!r}")
        if self.output_mode not in OUTPUT_MODES:
            raise ValueError(f"output_mode must be one of {OUTPUT_MODES}, got {self.output_mode!r}")
        for name in ("start_delay", "predict_seconds", "jitter", "slow_seconds", "min_cancel_after"):
            if float(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.create_limit_per_min <= 0 or self.read_limit_per_min <= 0:
            raise ValueError("rate limits must be > 0")
        for name in ("create_burst", "read_burst"):
            burst = getattr(self, name)
            if burst is not None and burst < 1:
                raise ValueError(f"{name} must be >= 1 (a bucket must hold one request)")
        if self.webhook_retry_seconds < 0:
            raise ValueError("webhook_retry_seconds must be >= 0")
        # A zero backoff would retry a failing receiver in a tight loop for the whole window.
        if self.webhook_backoff_seconds <= 0 or self.webhook_timeout_seconds <= 0:
            raise ValueError("webhook_backoff_seconds and webhook_timeout_seconds must be > 0")
        secret_key(self.webhook_secret)

    def update(self, changes: dict[str, Any]) -> None:
        """Apply a partial update (JSON-ish values); raises ValueError on unknown keys/bad values.
        ``preset`` (a name in LIMIT_PRESETS) sets its rate-limit knobs first; other keys then apply."""
        changes = dict(changes)
        if "preset" in changes:
            changes = {**limit_preset(changes.pop("preset")), **changes}
        known = {f.name: f for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - set(known))
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(unknown)}")
        backup = self.to_dict()
        try:
            for key, value in changes.items():
                setattr(self, key, _coerce(known[key], value))
            self.validate()
        except (TypeError, ValueError):
            for key, value in backup.items():
                setattr(self, key, _coerce(known[key], value))
            raise

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["tokens"] = sorted(self.tokens)
        return data

    def public_dict(self) -> dict[str, Any]:
        """What `/_sim/config` shows: the knobs, never the accepted tokens, the signing secret or the
        admin token (whoever set them already knows them)."""
        data = self.to_dict()
        data["tokens"] = f"{len(self.tokens)} configured"
        data["webhook_secret"] = "***"
        data["admin_token"] = "***" if self.admin_token else None
        return data

    def create_capacity(self) -> float:
        return self.create_burst if self.create_burst is not None else max(1.0, self.create_limit_per_min)

    def read_capacity(self) -> float:
        return self.read_burst if self.read_burst is not None else max(1.0, self.read_limit_per_min)


def limit_preset(name: object) -> dict[str, Any]:
    """The rate-limit knobs of a named preset; ValueError naming the choices otherwise."""
    if not isinstance(name, str) or name not in LIMIT_PRESETS:
        raise ValueError(f"preset must be one of {', '.join(LIMIT_PRESETS)}, got {name!r}")
    return dict(LIMIT_PRESETS[name])


def _coerce(spec: dataclasses.Field[Any], value: Any) -> Any:
    kind = str(spec.type)
    if value is None:
        if "None" in kind:
            return None
        raise ValueError(f"{spec.name} cannot be null")
    if kind.startswith("set"):
        if not isinstance(value, list | set | tuple):
            raise ValueError(f"{spec.name} must be a list")
        return {str(v) for v in value}
    if kind.startswith("bool"):
        if not isinstance(value, bool):
            raise ValueError(f"{spec.name} must be a boolean")
        return value
    if kind.startswith("float"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{spec.name} must be a number")
        return float(value)
    if kind.startswith("int"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{spec.name} must be an integer")
        return value
    if not isinstance(value, str):
        raise ValueError(f"{spec.name} must be a string")
    return value
