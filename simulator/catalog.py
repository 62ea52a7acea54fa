"""Models and versions the simulator knows (jigsawstack/image-generation's published versions)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from genqueue.simulator.schema import FieldSpec, fields_for, openapi_schema

JIGSAW_MODEL = "jigsawstack/image-generation"
JIGSAW_LATEST = "43d5bce2e1c97fa1e7d8996187a85cd5c882787989091af3b135c7a16ca23b79"
HEX64 = re.compile(r"^[0-9a-f]{64}$")
MODEL_NAME = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class VersionInfo:
    model: str
    id: str
    created_at: str
    cog_version: str
    fields: tuple[FieldSpec, ...] | None
    """Input schema to validate against; None = accept any input as-is."""

    def as_json(self) -> dict[str, Any]:
        schema = openapi_schema(self.fields) if self.fields is not None else {
            "openapi": "3.0.2", "info": {"title": "Cog", "version": "0.1.0"}, "paths": {},
            "components": {"schemas": {"Input": {"type": "object", "properties": {}},
                                       "Output": {"title": "Output"}}},
        }
        return {"id": self.id, "created_at": self.created_at, "cog_version": self.cog_version,
                "openapi_schema": schema}


def _jigsaw(version_id: str, created_at: str) -> VersionInfo:
    return VersionInfo(JIGSAW_MODEL, version_id, created_at, "0.14.1", fields_for(version_id))


KNOWN_VERSIONS: dict[str, VersionInfo] = {
    v.id: v
    for v in (
        _jigsaw(JIGSAW_LATEST, "2025-05-14T19:21:41.512436Z"),
        _jigsaw(
            "108c6bc35fe8f8fe6b0329f2cff03233bc5d132f4006ce2565b36bab6a587ec4", "2025-03-26T22:10:05.227391Z"
        ),
        _jigsaw(
            "d03decea0f0ad7ee9aecaf2561eb5d195c687319d66bc3d802fd008013e718c8", "2025-02-10T17:41:32.802114Z"
        ),
        _jigsaw(
            "6a66e87ee7e9afbabd25ee50458c88ab62463f13678e07b5e0fa96c0045c5c0c", "2025-01-21T08:02:47.090214Z"
        ),
    )
}
LATEST_BY_MODEL = {JIGSAW_MODEL: JIGSAW_LATEST}


def _generic(model: str, version_id: str) -> VersionInfo:
    return VersionInfo(model, version_id, "2025-01-01T00:00:00.000000Z", "0.14.1", None)


def resolve_version(raw: Any, accept_any: bool) -> VersionInfo | None:
    """``owner/name:<64hex>`` or bare ``<64hex>`` -> VersionInfo, or None (-> 422)."""
    if not isinstance(raw, str):
        return None
    model, _, version_id = raw.rpartition(":")
    if model and not MODEL_NAME.match(model):
        return None
    if not HEX64.match(version_id):
        return None
    known = KNOWN_VERSIONS.get(version_id)
    if known is not None:
        return known
    if accept_any:
        return _generic(model or "sim/any", version_id)
    return None


def resolve_model(owner: str, name: str, accept_any: bool) -> VersionInfo | None:
    """Latest version of a model (models/deployments endpoints); unknown -> None unless accept_any."""
    model = f"{owner}/{name}"
    latest = LATEST_BY_MODEL.get(model)
    if latest is not None:
        return KNOWN_VERSIONS[latest]
    if accept_any and MODEL_NAME.match(model):
        return _generic(model, hashlib.sha256(model.encode()).hexdigest())
    return None


def find_version(owner: str, name: str, version_id: str, accept_any: bool) -> VersionInfo | None:
    known = KNOWN_VERSIONS.get(version_id)
    if known is not None and known.model == f"{owner}/{name}":
        return known
    if accept_any and HEX64.match(version_id):
        return _generic(f"{owner}/{name}", version_id)
    return None
