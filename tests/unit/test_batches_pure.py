"""The pure parts of batches: NDJSON line splitting, status/progress/ETA, callback URL checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from genqueue.intake.callback_url import problem as callback_url_problem
from genqueue.intake.ndjson import LineSplitter, split_lines
from genqueue.models.batch_status import batch_progress

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_lines_are_numbered_across_chunk_boundaries_and_blank_lines_skipped() -> None:
    chunks = [b'{"a":', b'1}\n\n  \n{"b"', b':2}\r\n{"c":3}']
    assert list(split_lines(chunks, 100)) == [(1, b'{"a":1}'), (4, b'{"b":2}\r'), (5, b'{"c":3}')]


def test_a_line_over_the_cap_is_reported_and_not_held() -> None:
    splitter = LineSplitter(10)
    out = splitter.feed(b"short\n" + b"x" * 8)
    out += splitter.feed(b"y" * 1000)  # over the cap: dropped as it arrives
    assert len(splitter._partial) == 0
    out += splitter.feed(b"z\nok\n")
    out += splitter.end()
    assert out == [(1, b"short"), (2, None), (3, b"ok")]


def test_a_last_line_without_newline_over_the_cap() -> None:
    assert list(split_lines([b"a\n", b"b" * 20], 5)) == [(1, b"a"), (2, None)]


def test_status_progress_and_eta() -> None:
    now = T0 + timedelta(seconds=100)
    accepting = batch_progress({"queued": 3}, sealed=False, cancel_requested=False, created_at=T0, now=now)
    assert accepting.status == "accepting" and accepting.eta_seconds is None
    half = batch_progress({"succeeded": 40, "failed": 10, "running": 50}, sealed=True, cancel_requested=False,
                          created_at=T0, now=now)
    assert (half.status, half.total, half.done, half.progress, half.eta_seconds) == ("processing", 100, 50, 0.5, 100.0)
    none_done = batch_progress({"queued": 5}, sealed=True, cancel_requested=False, created_at=T0, now=now)
    assert none_done.eta_seconds is None and none_done.progress == 0
    done = batch_progress({"succeeded": 1, "failed": 1}, sealed=True, cancel_requested=False, created_at=T0, now=now)
    assert (done.status, done.progress, done.eta_seconds) == ("completed", 1.0, 0.0)
    canceled = batch_progress({"canceled": 2}, sealed=True, cancel_requested=True, created_at=T0, now=now)
    assert canceled.status == "canceled"
    empty = batch_progress({}, sealed=True, cancel_requested=False, created_at=T0, now=now)
    assert (empty.status, empty.progress) == ("completed", 1.0)


@pytest.mark.parametrize(("url", "ok"), [
    ("https://hooks.example.com/x?y=1", True),
    ("http://10.0.0.1:8080/cb", False),  # a private address: refused by the SSRF rule (intake.callback_url)
    ("ftp://example.com/", False),
    ("https://", False),
    ("https://u:p@example.com/", False),
    ("https://example.com:99999/", False),
    ("https://exa mple.com/", False),
    ("https://example.com/" + "a" * 3000, False),
    ("javascript:alert(1)", False),
])
def test_callback_urls(url: str, ok: bool) -> None:
    assert (callback_url_problem(url, False) is None) is ok
