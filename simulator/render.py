"""Turn a Record (plus the clock) into the prediction JSON Replicate returns (reference §3)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from genqueue.simulator.store import US, Record, State


def rfc3339(us: int) -> str:
    """Integer epoch microseconds -> ``2025-06-27T19:17:26.206297Z``."""
    secs, frac = divmod(us, US)
    return datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:06d}Z"


def parse_rfc3339(text: str) -> int:
    """ISO 8601 (``Z`` or offset, any fraction; naive = UTC) -> epoch microseconds."""
    value = text.strip().replace(" ", "+")
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    head, dot, rest = value.partition(".")
    if dot:  # trim nanoseconds: fromisoformat takes at most 6 digits on every 3.11 patch level
        digits = len(rest) - len(rest.lstrip("0123456789"))
        rest = rest[: min(digits, 6)] + rest[digits:]
        value = f"{head}.{rest}"
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp()) * US + parsed.microsecond


def file_url(base: str, rec: Record, index: int) -> str:
    return f"{base}/files/{rec.id}/out-{index}.{rec.ext}"


def _output(rec: Record, base: str) -> Any:
    if rec.output_mode == "data_uri":
        mime = "image/svg+xml" if rec.ext == "svg" else "image/png"
        return f"data:{mime};base64," + base64.b64encode(rec.file_bytes(0)).decode()
    if rec.output_mode == "list":
        return [file_url(base, rec, i) for i in range(rec.n_outputs)]
    return file_url(base, rec, 0)


def _logs(rec: Record, state: State) -> str | None:
    if state.data_removed:
        return None
    if state.started_us is None:
        return ""
    steps, seed = rec.input.get("steps", 4), rec.input.get("seed")
    if not isinstance(seed, int):
        seed = rec.created_us % 100000
    lines = [f"Using seed: {seed}",
             f"Generating image ({rec.size[0]}x{rec.size[1]}, {steps} steps)"]
    if state.status == "succeeded":
        lines += ["Image generated", f"Written {rec.n_outputs} output file(s)"]
    elif state.status == "failed" and rec.error:
        lines.append(f"Error: {rec.error}")
    elif state.status == "canceled":
        lines.append("Prediction canceled")
    return "\n".join(lines) + "\n"


def prediction_json(rec: Record, now_us: int, base: str) -> dict[str, Any]:
    state = rec.state(now_us)
    body: dict[str, Any] = {
        "id": rec.id,
        "model": rec.model,
        "version": rec.version,
        "input": {} if state.data_removed else rec.input,
        "logs": _logs(rec, state),
        "output": None,
        "data_removed": state.data_removed,
        "error": rec.error if state.status == "failed" else None,
        "source": "api",
        "status": state.status,
        "created_at": rfc3339(rec.created_us),
        "urls": {
            "get": f"{base}/v1/predictions/{rec.id}",
            "cancel": f"{base}/v1/predictions/{rec.id}/cancel",
        },
    }
    if state.started_us is not None:
        body["started_at"] = rfc3339(state.started_us)
    if state.completed_us is not None:
        body["completed_at"] = rfc3339(state.completed_us)
        predict = 0 if state.started_us is None else state.completed_us - state.started_us
        body["metrics"] = {
            "predict_time": predict / US,
            "total_time": (state.completed_us - rec.created_us) / US,
        }
        if state.status == "succeeded" and not state.data_removed:
            body["output"] = _output(rec, base)
            body["metrics"]["image_count"] = rec.n_outputs
    if rec.deadline_us is not None:
        body["deadline"] = rfc3339(rec.deadline_us)
    return body
