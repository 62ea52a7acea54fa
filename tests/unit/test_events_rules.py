"""The pure parts of waits and event streams: the Prefer header, the /v1/events filter, stream ids."""

from __future__ import annotations

import socket

import pytest
import redis

from genqueue.api.errors import ApiError
from genqueue.api.event_filter import EventFilter, matches, parse_filter
from genqueue.api.prefer import parse_wait
from genqueue.api.routes_events import sse_frame
from genqueue.core.events import decode, is_after, parse_id, publish, publish_many


@pytest.mark.parametrize(("header", "seconds"), [
    (None, None), ("", None), ("respond-async", None), ("wait", 60), ("wait=1", 1), ("wait=60", 60),
    ("respond-async, wait=5", 5), (" WAIT = 7 ", 7), ('wait="9"', 9), ("wait=3; foo=bar", 3),
])
def test_prefer_wait_values(header: str | None, seconds: int | None) -> None:
    assert parse_wait(header) == seconds


@pytest.mark.parametrize("header", ["wait=0", "wait=61", "wait=abc", "wait=-1", "wait=1.5", "wait="])
def test_prefer_wait_refused_names_the_header(header: str) -> None:
    with pytest.raises(ApiError) as err:
        parse_wait(header)
    assert err.value.status == 422
    assert [f.field for f in err.value.fields] == ["header.Prefer"]
    assert "1 to 60" in err.value.fields[0].reason


def test_filter_parses_every_kind() -> None:
    flt = parse_filter([("status", "succeeded"), ("status", "failed"), ("batch", "b1"), ("metadata.user", "u7")])
    assert flt == EventFilter(frozenset({"succeeded", "failed"}), "b1", {"user": "u7"})
    assert flt.needs_job and not EventFilter(frozenset({"failed"})).needs_job


@pytest.mark.parametrize(("params", "field"), [
    ([("status", "done")], "query.status"),
    ([("colour", "red")], "query.colour"),
    ([("metadata.", "x")], "query.metadata"),
    ([("batch", "")], "query.batch"),
    ([("batch", "a"), ("batch", "b")], "query.batch"),
    ([("status", "x" * 300)], "query.status"),
])
def test_bad_filter_is_422_naming_it(params: list[tuple[str, str]], field: str) -> None:
    with pytest.raises(ApiError) as err:
        parse_filter(params)
    assert err.value.status == 422
    assert field in [f.field for f in err.value.fields]


def test_matches_on_status_batch_and_metadata() -> None:
    job = {"id": "j", "status": "succeeded", "batch_id": "b1", "metadata": {"user": "u7", "n": 3, "ok": True}}
    assert matches(EventFilter(), "running", None)
    assert matches(EventFilter(frozenset({"succeeded"})), "succeeded", job)
    assert not matches(EventFilter(frozenset({"succeeded"})), "running", job)
    assert matches(EventFilter(batch="b1"), "running", job)
    assert not matches(EventFilter(batch="b2"), "running", job)
    assert matches(EventFilter(metadata={"user": "u7", "n": "3", "ok": "true"}), "queued", job)
    assert not matches(EventFilter(metadata={"user": "u8"}), "queued", job)
    assert not matches(EventFilter(metadata={"missing": "x"}), "queued", job)


def test_jobs_without_batch_or_metadata_never_match_those_filters() -> None:
    plain = {"id": "j", "status": "queued"}
    assert not matches(EventFilter(batch="b1"), "queued", plain)
    assert not matches(EventFilter(metadata={"user": "u7"}), "queued", plain)
    assert not matches(EventFilter(batch="b1"), "queued", None)


def test_stream_ids_compare_as_numbers() -> None:
    assert parse_id("1700000000000-12") == (1700000000000, 12)
    assert parse_id("abc") is None and parse_id("1-2-3") is None and parse_id("") is None
    assert is_after("10-0", "9-5") and is_after("9-10", "9-9")  # not as text: "10-0" < "9-5" there
    assert not is_after("9-5", "9-5") and not is_after("x", "1-0")


def test_decode_entry_and_frame() -> None:
    event = decode(b"5-1", {b"job": b"abc", b"status": b"running"})
    assert event is not None and (event.id, event.job_id, event.status) == ("5-1", "abc", "running")
    assert decode(b"5-2", {b"other": b"x"}) is None
    assert sse_frame("5-1", '{"id":"abc"}') == 'id: 5-1\nevent: job.updated\ndata: {"id":"abc"}\n\n'


def test_publish_never_raises_when_redis_is_away(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as sock:  # a loopback port nothing listens on: refused at once
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1)
    publish(client, "job-1", "succeeded")
    publish_many(client, [("job-2", "queued"), ("job-3", "queued")])
    publish_many(client, [])
    assert sum("job event not published" in r.getMessage() for r in caplog.records) == 2
