"""Downloading stored outputs: bytes streamed from storage with type, length and sha256 ETag."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from api_helpers import Api

from genqueue.models.tables import JobOutput

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def test_output_streams_stored_bytes(api: Api) -> None:
    job_id = api.create()["id"]
    digest = hashlib.sha256(PNG).hexdigest()
    key = f"jobs/{job_id}/0.png"
    api.storage.put(key, PNG, "image/png")
    with api.sessions.begin() as s:
        s.add(JobOutput(job_id=job_id, index=0, content_type="image/png", size=len(PNG), sha256=digest,
                        storage_key=key, storage_uri=f"file:///data/{key}"))
        s.add(JobOutput(job_id=job_id, index=1, content_type="image/png", size=3, sha256="0" * 64,
                        storage_key=f"jobs/{job_id}/1.png", storage_uri="file:///data/gone"))
    api.set_job(job_id, status="succeeded", finished_at=datetime.now(UTC), predict_time=1.5)

    job = api.client.get(f"/v1/jobs/{job_id}", headers=api.auth("alice")).json()
    assert job["metrics"]["predict_time"] == 1.5 and job["metrics"]["total_time"] is None
    out = job["outputs"][0]
    # The storage URI names a server path or bucket: ops and admin keys see it, submit keys don't.
    assert out == {"index": 0, "content_type": "image/png", "size": len(PNG), "sha256": digest,
                   "storage_uri": None,
                   "url": f"http://testserver/v1/jobs/{job_id}/outputs/0"}
    as_ops = api.client.get(f"/v1/jobs/{job_id}", headers=api.auth("ops")).json()["outputs"][0]
    assert as_ops["storage_uri"] == f"file:///data/{key}"
    listed = api.client.get("/v1/jobs", headers=api.auth("alice")).json()["jobs"][0]["outputs"][0]
    assert listed["storage_uri"] is None

    resp = api.client.get(out["url"], headers=api.auth("alice"))
    assert resp.status_code == 200
    assert resp.content == PNG
    assert resp.headers["content-type"] == "image/png"
    assert resp.headers["content-length"] == str(len(PNG))
    assert resp.headers["etag"] == f'"{digest}"'

    cached = api.client.get(out["url"], headers={**api.auth("alice"), "If-None-Match": f'"{digest}"'})
    assert cached.status_code == 304 and cached.content == b""
    assert api.client.get(out["url"], headers=api.auth("ops")).content == PNG

    for url, who in ((out["url"], "bob"), (f"/v1/jobs/{job_id}/outputs/7", "alice")):
        resp = api.client.get(url, headers=api.auth(who))
        assert resp.status_code == 404
        assert resp.json()["error"]["code"] == "not_found"
    missing = api.client.get(f"/v1/jobs/{job_id}/outputs/1", headers=api.auth("alice"))
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "output_missing"
    assert api.client.get(out["url"]).status_code == 401


def test_output_from_the_real_storage_backend(make_api: Any, sqlite_url: str, tmp_path: Path) -> None:
    storage = pytest.importorskip("storage")
    api: Api = make_api(sqlite_url, real_storage=True)
    job_id = api.create()["id"]
    backend = storage.make_storage(f"file://{tmp_path}/out")
    stored = backend.put_stream(f"jobs/{job_id}/0.png", iter([PNG[:100], PNG[100:]]), "image/png")
    with api.sessions.begin() as s:
        for index, key in ((0, stored.key), (1, f"jobs/{job_id}/1.png")):
            s.add(JobOutput(job_id=job_id, index=index, content_type="image/png", size=stored.size,
                            sha256=stored.sha256, storage_key=key, storage_uri=stored.uri))
    resp = api.client.get(f"/v1/jobs/{job_id}/outputs/0", headers=api.auth("alice"))
    assert resp.status_code == 200 and resp.content == PNG
    assert resp.headers["content-type"] == "image/png"
    assert resp.headers["etag"] == f'"{hashlib.sha256(PNG).hexdigest()}"'
    missing = api.client.get(f"/v1/jobs/{job_id}/outputs/1", headers=api.auth("alice"))
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "output_missing"
