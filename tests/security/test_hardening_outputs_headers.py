"""Outputs are served from the API's origin (where the dashboard keeps an ops key), so whatever type
an output claims, a browser must neither sniff it, run it, nor render it inline unless it is a raster
image: nosniff, a sandboxing CSP and Content-Disposition: attachment for everything else (SVG too)."""

from __future__ import annotations

import hashlib

import pytest
from sec_support import SecApi, job_body

from genqueue.models.tables import JobOutput

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.domain)</script></svg>'
HTML = b"<html><script>fetch('/v1/keys')</script></html>"

CASES = [("image/png", PNG, False), ("image/svg+xml", SVG, True), ("text/html", HTML, True),
         ("application/json", b'{"a": 1}', True), ("application/octet-stream", b"\x00\x01", True)]


@pytest.mark.parametrize(("ctype", "data", "attachment"), CASES, ids=[c[0] for c in CASES])
def test_output_download_headers(ctype: str, data: bytes, attachment: bool, sec_api: SecApi) -> None:
    storage = pytest.importorskip("storage")
    resp = sec_api.client.post("/v1/jobs", json=job_body(), headers=sec_api.auth("alice"))
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["id"]
    backend = storage.make_storage(sec_api.settings.effective_storage_url)
    stored = backend.put_stream(f"jobs/{job_id}/0.bin", iter([data]), ctype)
    with sec_api.sessions.begin() as s:
        s.add(JobOutput(job_id=job_id, index=0, content_type=ctype, size=stored.size,
                        sha256=hashlib.sha256(data).hexdigest(), storage_key=stored.key, storage_uri=stored.uri))
    got = sec_api.client.get(f"/v1/jobs/{job_id}/outputs/0", headers=sec_api.auth("alice"))
    assert got.status_code == 200 and got.content == data
    assert got.headers["x-content-type-options"] == "nosniff"
    csp = got.headers["content-security-policy"]
    assert "sandbox" in csp and "default-src 'none'" in csp
    disposition = got.headers.get("content-disposition", "")
    assert disposition.startswith("attachment") == attachment, disposition
    if attachment:
        assert 'filename="output-0' in disposition
