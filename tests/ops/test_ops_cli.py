"""`genqueue stats`: reads SQL directly; JSON matches the report, tables render."""

from __future__ import annotations

import json

import pytest
from ops_app import Ops
from ops_helpers import EXPECTED_BILLED, EXPECTED_COUNTS
from typer.testing import CliRunner

from genqueue.cli.main import app


@pytest.fixture
def cli_env(ops: Ops, monkeypatch: pytest.MonkeyPatch) -> Ops:
    monkeypatch.setenv("DATABASE_URL", ops.settings.database_url)
    monkeypatch.setenv("GENQUEUE_DATA_DIR", str(ops.settings.data_dir))
    monkeypatch.setenv("GENQUEUE_PRICE_PER_SECOND", str(ops.settings.price_per_second))
    return ops


def test_stats_json(cli_env: Ops) -> None:
    result = CliRunner().invoke(app, ["stats", "--window", "1h", "--json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["status_counts"] == EXPECTED_COUNTS
    assert body["cost"]["billed_seconds"] == pytest.approx(EXPECTED_BILLED)


def test_stats_tables(cli_env: Ops) -> None:
    result = CliRunner().invoke(app, ["stats", "--window", "all"])
    assert result.exit_code == 0, result.output
    assert "succeeded=5" in result.output and "prediction_failed" in result.output
    assert "predict_time" in result.output


def test_stats_bad_window(cli_env: Ops) -> None:
    result = CliRunner().invoke(app, ["stats", "--window", "soon"])
    assert result.exit_code == 2
