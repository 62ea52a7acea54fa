"""`genqueue jobs retry|cancel`: the bulk actions from a terminal, against the API's own database and Redis."""

from __future__ import annotations

from datetime import timedelta

import pytest
from api_helpers import Api, MakeApi
from cryptography.fernet import Fernet
from test_api_retries import _failed
from typer.testing import CliRunner

from genqueue.cli.jobs_cmd import parse_metadata, parse_since
from genqueue.cli.main import app
from genqueue.models.base import utcnow


def test_parse_since_and_metadata() -> None:
    assert parse_since("90s") == timedelta(seconds=90) and parse_since("1h") == timedelta(hours=1)
    assert parse_since("2d") == timedelta(days=2) and parse_since("1.5m") == timedelta(seconds=90)
    for bad in ("", "1", "h", "-1h", "0m", "1w"):
        with pytest.raises(ValueError):
            parse_since(bad)
    assert parse_metadata(["team=vision", "run=a=b"]) == {"team": "vision", "run": "a=b"}
    with pytest.raises(ValueError):
        parse_metadata(["novalue"])


@pytest.fixture
def cli_api(make_api: MakeApi, sqlite_url: str, redis_url: str, tmp_path: object,
            monkeypatch: pytest.MonkeyPatch) -> Api:
    api = make_api(sqlite_url)
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("GENQUEUE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SECRETS_KEY", Fernet.generate_key().decode())  # a bulk action decrypts nothing
    return api


def test_cli_retry_asks_then_retries_only_the_matching_jobs_with_a_progress_bar(cli_api: Api) -> None:
    api = cli_api
    recent = _failed(api, "alice", 2) + _failed(api, "bob", 1)
    (old,) = _failed(api, "alice", 1)
    api.set_job(old, created_at=utcnow() - timedelta(hours=3))
    api.app.state.redis.flushdb()
    runner = CliRunner()
    dry = runner.invoke(app, ["jobs", "retry", "--status", "failed", "--since", "1h", "--dry-run"])
    assert dry.exit_code == 0 and "3 jobs match" in dry.output
    refused = runner.invoke(app, ["jobs", "retry", "--status", "failed", "--since", "1h"], input="n\n")
    assert refused.exit_code == 1 and "Retry 3 jobs?" in refused.output
    assert {api.job(i).status for i in recent} == {"failed"}
    done = runner.invoke(app, ["jobs", "retry", "--status", "failed", "--since", "1h"], input="y\n")
    assert done.exit_code == 0, done.output
    assert "3 jobs queued again" in done.output and "3/3" in done.output  # the progress bar's count
    assert {api.job(i).status for i in recent} == {"queued"} and api.job(old).status == "failed"
    assert sorted(api.queued) == sorted(recent)


def test_cli_cancel_and_bad_options(cli_api: Api) -> None:
    api = cli_api
    ids = [api.create("alice")["id"] for _ in range(2)]
    runner = CliRunner()
    assert runner.invoke(app, ["jobs", "cancel", "--status", "failed", "--yes"]).exit_code == 2
    assert runner.invoke(app, ["jobs", "cancel", "--since", "soon", "--yes"]).exit_code == 2
    done = runner.invoke(app, ["jobs", "cancel", "--status", "queued", "--yes"])
    assert done.exit_code == 0, done.output
    assert {api.job(i).status for i in ids} == {"canceled"}
