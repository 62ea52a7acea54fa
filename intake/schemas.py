"""Input validation for models we know, so bad input is refused before it costs a create.

The schema mirrors the model's published OpenAPI input (jigsawstack/image-generation); models we
don't know are passed through and Replicate validates them at create time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from genqueue.intake.errors import FieldError

JIGSAWSTACK = "jigsawstack/image-generation"
JIGSAWSTACK_VERSIONS = {
    "43d5bce2e1c97fa1e7d8996187a85cd5c882787989091af3b135c7a16ca23b79",
}
ASPECT_RATIOS = ("1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21")


def _int_range(errors: list[FieldError], data: dict[str, Any], key: str, lo: int, hi: int) -> None:
    if key not in data:
        return
    v = data[key]
    if not isinstance(v, int) or isinstance(v, bool):
        errors.append(FieldError(f"input.{key}", "must be an integer"))
    elif not lo <= v <= hi:
        errors.append(FieldError(f"input.{key}", f"must be between {lo} and {hi}"))


def _string(errors: list[FieldError], data: dict[str, Any], key: str, *, required: bool = False,
            max_len: int = 10000) -> None:
    if key not in data:
        if required:
            errors.append(FieldError(f"input.{key}", "is required"))
        return
    v = data[key]
    if not isinstance(v, str):
        errors.append(FieldError(f"input.{key}", "must be a string"))
    elif required and not v:
        errors.append(FieldError(f"input.{key}", "must not be empty"))
    elif len(v) > max_len:
        errors.append(FieldError(f"input.{key}", f"must be at most {max_len} characters"))


def validate_jigsawstack(data: dict[str, Any]) -> list[FieldError]:
    errors: list[FieldError] = []
    _string(errors, data, "prompt", required=True, max_len=5000)
    _string(errors, data, "api_key", required=True, max_len=500)
    if "aspect_ratio" in data and data["aspect_ratio"] not in ASPECT_RATIOS:
        errors.append(FieldError("input.aspect_ratio", "must be one of " + ", ".join(ASPECT_RATIOS)))
    if "output_format" in data and data["output_format"] not in ("png", "svg"):
        errors.append(FieldError("input.output_format", "must be png or svg"))
    _int_range(errors, data, "steps", 1, 90)
    _int_range(errors, data, "width", 256, 1920)
    _int_range(errors, data, "height", 256, 1920)
    if "guidance" in data:
        g = data["guidance"]
        if not isinstance(g, int | float) or isinstance(g, bool) or not 1 <= g <= 28:
            errors.append(FieldError("input.guidance", "must be a number between 1 and 28"))
    if "seed" in data and (not isinstance(data["seed"], int) or isinstance(data["seed"], bool)):
        errors.append(FieldError("input.seed", "must be an integer"))
    for key in ("negative_prompt", "url", "file_store_key"):
        _string(errors, data, key, max_len=5000)
    return errors


VALIDATORS: dict[str, Callable[[dict[str, Any]], list[FieldError]]] = {JIGSAWSTACK: validate_jigsawstack}


def validator_for(model_name: str | None, version: str | None) -> Callable[[dict[str, Any]], list[FieldError]] | None:
    if model_name in VALIDATORS:
        return VALIDATORS[model_name]
    if version and version.rsplit(":", 1)[-1] in JIGSAWSTACK_VERSIONS:
        return validate_jigsawstack
    return None
