"""Prices, a job's cost, spend windows and caps (genqueue.core.pricing), and the dispatch plan holding a
capped key: pure, no services."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from genqueue.core.pricing import (
    Period,
    Price,
    PriceTable,
    SpendCap,
    cap_reached,
    job_cost,
    load_price_table,
    parse_price_table,
    spend_window,
)
from genqueue.sched.plan import Fairness, KeyRule, Lane, plan

TABLE = {
    "hardware": {"gpu-a40-large": 0.000725, "cpu": 0.0001},
    "models": {"jigsawstack/image-generation": {"per_output": 0.003},
               "owner/a40": {"hardware": "gpu-a40-large"},
               "owner/both": {"per_second": 0.001, "per_output": 0.01}},
    "default": {"per_second": 0.0014},
}


def test_a_model_priced_per_second_on_its_hardware_class() -> None:
    t = parse_price_table(TABLE, 0.5)
    assert t.price("owner/a40") == Price(per_second=0.000725)
    assert job_cost(t.price("owner/a40"), 10.0, 1) == pytest.approx(0.00725)


def test_a_model_priced_per_output_ignores_seconds() -> None:
    t = parse_price_table(TABLE, 0.5)
    assert job_cost(t.price("jigsawstack/image-generation"), 12.5, 4) == pytest.approx(0.012)


def test_both_parts_add_and_an_unknown_model_costs_the_default() -> None:
    t = parse_price_table(TABLE, 0.5)
    assert job_cost(t.price("owner/both"), 2.0, 3) == pytest.approx(0.032)
    assert t.price("someone/else") == Price(per_second=0.0014)
    assert t.price(None) == Price(per_second=0.0014)


def test_without_a_default_entry_the_configured_price_per_second_is_the_default() -> None:
    assert parse_price_table({"models": {}}, 0.5).default == Price(per_second=0.5)
    assert load_price_table(None, 0.25) == PriceTable(Price(per_second=0.25))


def test_an_aborted_or_never_run_prediction_costs_nothing_for_its_seconds() -> None:
    p = Price(per_second=1.0)
    assert job_cost(p, 5.0, 0, aborted=True) == 0.0
    assert job_cost(p, None, 0) == 0.0


@pytest.mark.parametrize("doc, named", [
    ({"models": {"a/b": {"per_second": -1}}}, "models.a/b.per_second"),
    ({"models": {"a/b": {"hardware": "tpu"}}}, "models.a/b.hardware"),
    ({"models": {"a/b": {"per_minute": 1}}}, "models.a/b"),
    ({"hardware": {"cpu": "cheap"}}, "hardware.cpu"),
    ({"prices": {}}, "price table"),
])
def test_a_bad_table_names_the_bad_entry(doc: object, named: str) -> None:
    with pytest.raises(ValueError, match=named.replace(".", r"\.")):
        parse_price_table(doc, 0.1)


def test_a_price_table_file_is_read_and_a_broken_one_named(tmp_path: Path) -> None:
    good = tmp_path / "prices.json"
    good.write_text(json.dumps(TABLE))
    assert load_price_table(str(good), 0.0).price("owner/a40").per_second == 0.000725
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=r"bad\.json"):
        load_price_table(str(bad), 0.0)


def test_spend_windows_are_utc_calendar_days_and_months() -> None:
    at = datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert spend_window(Period.DAY, at) == (datetime(2026, 12, 31, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    assert spend_window(Period.MONTH, at) == (datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    assert spend_window(Period.MONTH, datetime(2026, 2, 10, tzinfo=UTC))[1] == datetime(2026, 3, 1, tzinfo=UTC)


def test_a_cap_is_reached_at_the_limit_not_before() -> None:
    cap = SpendCap(1.0, Period.DAY)
    assert not cap_reached(cap, 0.999)
    assert cap_reached(cap, 1.0)
    assert not cap_reached(None, 1e9)


def test_the_plan_skips_a_held_key_and_serves_the_others() -> None:
    lanes = [Lane(5, "capped", (("c0", 1.0), ("c1", 2.0)), 2), Lane(5, "free", (("f0", 3.0),), 1)]
    rules = {"capped": KeyRule(held=True)}
    picks = plan(lanes, 5, 10.0, rules=rules, active={}, fairness=Fairness())
    assert [p.job_id for p in picks] == ["f0"]
    released = plan(lanes, 5, 10.0, rules={}, active={}, fairness=Fairness())
    assert sorted(p.job_id for p in released) == ["c0", "c1", "f0"]


def test_a_bad_price_table_stops_start_up_naming_the_variable_and_entry(tmp_path: Path) -> None:
    from genqueue.core.settings import ConfigError, load_settings

    bad = tmp_path / "prices.json"
    bad.write_text(json.dumps({"models": {"a/b": {"hardware": "tpu"}}}))
    with pytest.raises(ConfigError, match=r"GENQUEUE_PRICE_TABLE: .*models\.a/b\.hardware"):
        load_settings(_env_file=None, GENQUEUE_PRICE_TABLE=str(bad))
    good = tmp_path / "good.json"
    good.write_text(json.dumps(TABLE))
    prices = load_settings(_env_file=None, GENQUEUE_PRICE_TABLE=str(good), GENQUEUE_PRICE_PER_SECOND="0.5").prices()
    assert prices.price("owner/a40").per_second == 0.000725 and prices.default.per_second == 0.0014
