"""jigsawstack/image-generation input schema: validation with Replicate's 422 wording, and OpenAPI.

Messages follow the JSON-schema validator Replicate uses (gojsonschema): field ``input`` or
``input.<name>``, detail lines ``- <field>: <description>\\n``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

ASPECT_RATIOS = ("1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21")


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: str  # "string" | "integer" | "number"
    description: str
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    enum: tuple[str, ...] | None = None
    default: Any = None
    secret: bool = False


JIGSAW_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("prompt", "string", "The text prompt to generate the image from.", True, min_length=1,
              max_length=5000),
    FieldSpec("aspect_ratio", "string", "The aspect ratio of the generated image", enum=ASPECT_RATIOS,
              default="1:1"),
    FieldSpec("width", "integer", "The width of the image.", minimum=256, maximum=1920),
    FieldSpec("height", "integer", "The height of the image.", minimum=256, maximum=1920),
    FieldSpec("steps", "integer", "The number of denoising steps.", minimum=1, maximum=90, default=4),
    FieldSpec("output_format", "string", "The output format of the generated image", enum=("png", "svg"),
              default="png"),
    FieldSpec("url", "string", "A valid URL where the generated image will be sent"),
    FieldSpec("file_store_key", "string", "Key to store the generated image in file storage"),
    FieldSpec("negative_prompt", "string", "Text describing what you don't want in the image"),
    FieldSpec("guidance", "number", "Higher guidance forces the model to better follow the prompt.",
              minimum=1, maximum=28),
    FieldSpec("seed", "integer", "Makes generation deterministic."),
    FieldSpec("api_key", "string", "Your JigsawStack API Key (required)", True, secret=True),
)
RETURN_TYPE = FieldSpec("return_type", "string", "The specified return type for the response",
                        enum=("url", "base64", "binary"), default="url")


@dataclass(frozen=True)
class InvalidField:
    type: str
    field: str
    description: str

    def as_dict(self) -> dict[str, str]:
        return {"type": self.type, "field": self.field, "description": self.description}


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _type_ok(spec: FieldSpec, value: Any) -> bool:
    given = _type_name(value)
    if spec.type == "number":
        return given in ("integer", "number")
    return given == spec.type


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _check(spec: FieldSpec, value: Any) -> list[InvalidField]:
    where = f"input.{spec.name}"
    if not _type_ok(spec, value):
        msg = f"Invalid type. Expected: {spec.type}, given: {_type_name(value)}"
        return [InvalidField("invalid_type", where, msg)]
    errors: list[InvalidField] = []
    if spec.enum is not None and value not in spec.enum:
        allowed = ", ".join(f'"{v}"' for v in spec.enum)
        errors.append(InvalidField("enum", where, f"{where} must be one of the following: {allowed}"))
    if spec.min_length is not None and len(value) < spec.min_length:
        msg = f"String length must be greater than or equal to {spec.min_length}"
        errors.append(InvalidField("string_gte", where, msg))
    if spec.max_length is not None and len(value) > spec.max_length:
        msg = f"String length must be less than or equal to {spec.max_length}"
        errors.append(InvalidField("string_lte", where, msg))
    if spec.minimum is not None and value < spec.minimum:
        msg = f"Must be greater than or equal to {_num(spec.minimum)}"
        errors.append(InvalidField("number_gte", where, msg))
    if spec.maximum is not None and value > spec.maximum:
        msg = f"Must be less than or equal to {_num(spec.maximum)}"
        errors.append(InvalidField("number_lte", where, msg))
    return errors


def fields_for(version_id: str) -> tuple[FieldSpec, ...]:
    if version_id.startswith("108c6bc3"):
        return (*JIGSAW_FIELDS[:-1], RETURN_TYPE, JIGSAW_FIELDS[-1])
    return JIGSAW_FIELDS


def validate_input(value: Any, fields: tuple[FieldSpec, ...] = JIGSAW_FIELDS) -> list[InvalidField]:
    """Errors for an input object; unknown keys are ignored (as Replicate does)."""
    if not isinstance(value, dict):
        msg = f"Invalid type. Expected: object, given: {_type_name(value)}"
        return [InvalidField("invalid_type", "input", msg)]
    errors = [
        InvalidField("required", "input", f"{spec.name} is required")
        for spec in fields
        if spec.required and spec.name not in value
    ]
    for spec in fields:
        if spec.name in value:
            errors.extend(_check(spec, value[spec.name]))
    return errors


def error_body(errors: list[InvalidField]) -> dict[str, Any]:
    detail = "".join(f"- {e.field}: {e.description}\n" for e in errors)
    return {
        "title": "Input validation failed",
        "detail": detail,
        "status": 422,
        "invalid_fields": [e.as_dict() for e in errors],
    }


def openapi_schema(fields: tuple[FieldSpec, ...] = JIGSAW_FIELDS) -> dict[str, Any]:
    """A Cog-style OpenAPI document with Input/Output components (Output: one URI string)."""
    properties: dict[str, Any] = {}
    for order, spec in enumerate(fields):
        prop: dict[str, Any] = {"type": spec.type, "title": spec.name.replace("_", " ").title(),
                                "description": spec.description, "x-order": order}
        for key, val in (("minimum", spec.minimum), ("maximum", spec.maximum),
                         ("minLength", spec.min_length), ("maxLength", spec.max_length),
                         ("default", spec.default)):
            if val is not None:
                prop[key] = val
        if spec.enum is not None:
            prop["enum"] = list(spec.enum)
        if spec.secret:
            prop.update({"format": "password", "writeOnly": True, "x-cog-secret": True})
        properties[spec.name] = prop
    required = [spec.name for spec in fields if spec.required]
    return json.loads(json.dumps({
        "openapi": "3.0.2",
        "info": {"title": "Cog", "version": "0.1.0"},
        "paths": {},
        "components": {"schemas": {
            "Input": {"type": "object", "title": "Input", "required": required, "properties": properties},
            "Output": {"type": "string", "title": "Output", "format": "uri"},
        }},
    }))
