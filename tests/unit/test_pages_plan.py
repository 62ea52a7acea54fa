"""The page reader's choices (worker.lifecycle.pages) and the safety-net poll schedule, with plain numbers."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

from genqueue.worker.lifecycle.pages import (
    MAX_GAP,
    PAGE_SIZE,
    Kind,
    Tracked,
    due_at,
    plan,
    reads_per_tick,
    sentinels,
    windows,
)
from genqueue.worker.lifecycle.policy import (
    MAX_POLL_DELAY,
    PAGED_MAX_DELAY,
    SAFETY_POLL,
    Paged,
    Polling,
    Webhooks,
    paged_delay,
)
from genqueue.worker.pages import observation
from genqueue.worker.replicate import parse_prediction


def t(i: int, created: float, expected: float | None = 60.0, seen_at: float | None = None,
      model: str | None = "m") -> Tracked:
    return Tracked(f"j{i}", created, model, expected, seen_at)


def test_due_at_expected_finish_then_backs_off_by_lateness() -> None:
    assert due_at(t(0, 100.0)) == 160.0
    assert due_at(t(0, 100.0, seen_at=150.0)) == 160.0  # seen before its finish: still due at it
    assert due_at(t(0, 100.0, seen_at=160.2)) == 160.5  # just late: again in MIN_GAP
    assert due_at(t(0, 100.0, seen_at=170.0)) == 175.0  # 10 s late: again in 5 s
    assert due_at(t(0, 100.0, seen_at=400.0)) == 400.0 + MAX_GAP


def test_due_at_without_duration_sentinel_every_second_others_by_age() -> None:
    assert due_at(t(0, 100.0, expected=None)) == 101.0
    assert due_at(t(0, 100.0, expected=None, seen_at=108.0), sentinel=True) == 109.0
    assert due_at(t(0, 100.0, expected=None, seen_at=108.0)) == 116.0
    assert due_at(t(0, 100.0, expected=None, seen_at=200.0)) == 200.0 + MAX_GAP


def test_sentinels_are_the_oldest_per_model_without_duration() -> None:
    tracked = [t(0, 5.0, None, model="a"), t(1, 3.0, None, model="a"), t(2, 1.0, 60.0, model="a"),
               t(3, 9.0, None, model="b")]
    assert sentinels(tracked) == {"j1", "j3"}


def test_windows_hold_at_most_a_page_of_known_predictions() -> None:
    due = [t(i, 1000.0 + i * 0.01) for i in range(250)]
    known = sorted(x.created for x in due)
    sizes = [len(w) for w in windows(due, known)]
    assert sizes == [100, 100, 50]
    # Finished predictions in between still fill a page: windows get narrower.
    known_more = sorted(known + [1000.0 + i * 0.01 + 0.005 for i in range(250)])
    assert [len(w) for w in windows(due, known_more)] == [50, 50, 50, 50, 50]


def test_plan_pages_for_dense_windows_a_get_for_a_lone_one_densest_first_capped() -> None:
    dense = [t(i, 1000.0 + i * 0.01) for i in range(150)]  # due at 1060..1061.5
    lone = t(999, 900.0)  # due at 960, alone in its window: a page of it would list the filler
    filler = [t(2000 + i, 950.0 + i * 0.01, expected=500.0) for i in range(120)]
    notyet = t(1000, 1100.0)
    tracked = [*dense, lone, *filler, notyet]
    known = sorted(x.created for x in tracked)
    reads = plan(tracked, known, 1062.0, max_reads=10)
    assert [(r.kind, len(r.job_ids)) for r in reads] == [(Kind.PAGE, 100), (Kind.PAGE, 50), (Kind.GET, 1)]
    assert all(r.after < 1000.0 + int(r.job_ids[0][1:]) * 0.01 < r.before for r in reads[:2])
    assert "j1000" not in {j for r in reads for j in r.job_ids}
    # The second page is widened to the neighbours (not due yet) that fit in the same page.
    assert reads[1].before > 1000.0 + 149 * 0.01 and reads[1].before >= 1100.0
    assert len(plan(tracked, known, 1062.0, max_reads=1)) == 1
    assert plan(tracked, known, 950.0, max_reads=10) == []
    # A sparse window waits HOLD after its first due prediction to gather more; a dense one does not.
    assert plan([lone], [900.0], 960.1, max_reads=10) == []
    assert len(plan([lone], [900.0], 960.25, max_reads=10)) == 1
    assert len(plan(dense[:30], known, 1060.2, max_reads=10)) == 1  # 21 due, 0.2 s


def test_a_sentinel_is_read_by_a_page_over_its_newer_neighbours() -> None:
    tracked = [t(i, 1000.0 + i * 0.1, expected=None, seen_at=1030.0) for i in range(200)]
    known = sorted(x.created for x in tracked)
    reads = plan(tracked, known, 1031.3, max_reads=10)  # only the sentinel (the oldest) is due
    assert [(r.kind, r.job_ids) for r in reads] == [(Kind.PAGE, ("j0",))]
    listed = [x for x in known if reads[0].after < x < reads[0].before]
    assert listed[0] == 1000.0 and len(listed) == PAGE_SIZE - 11  # SLACK short, `before` exclusive


def test_reads_per_tick_is_a_share_of_the_budget() -> None:
    assert reads_per_tick(3000, 0.5, 0.25) == 6
    assert reads_per_tick(60, 0.5, 0.25) == 1


def _simulate(n: int, duration: float, spread: float, jitter: float, known_expected: bool,
              ticks: float = 0.25) -> tuple[float, float, int]:
    """A tick-by-tick model of the reader: `n` predictions created over `spread` s, each finishing
    `duration` + U(0, jitter) s later; a read sees a prediction finished if it is, else running.
    Returns (reads per prediction, median detection lag, most reads in one tick)."""
    rng = random.Random(7)
    created = sorted(rng.uniform(0, spread) for _ in range(n))
    finish = {f"j{i}": c + duration + rng.uniform(0, jitter) for i, c in enumerate(created)}
    seen: dict[str, float] = {}
    lag: dict[str, float] = {}
    expected: float | None = duration + jitter / 2 if known_expected else None
    known = sorted(created)
    cap = reads_per_tick(3000, 0.5, ticks)
    reads = most = 0
    now = 0.0
    while len(lag) < n and now < 1000:
        now += ticks
        tracked = [Tracked(f"j{i}", c, "m", expected, seen.get(f"j{i}")) for i, c in enumerate(created)
                   if f"j{i}" not in lag]
        batch = plan(tracked, known, now, cap)
        most = max(most, len(batch))
        for r in batch:
            reads += 1
            # A page lists every prediction in its window: the reader applies them all.
            listed = [x.job_id for x in tracked if r.after < x.created < r.before] if r.kind is Kind.PAGE else r.job_ids
            for job in listed:
                if finish[job] <= now:
                    lag[job] = now - finish[job]
                    if expected is None:
                        expected = duration
                else:
                    seen[job] = now
    lags = sorted(lag.values())
    assert len(lags) == n
    return reads / n, lags[n // 2], most


def test_model_of_w2_known_duration_costs_a_few_hundredths_of_a_read() -> None:
    per, p50, most = _simulate(2000, 60.0, 6.0, 1.0, known_expected=True)
    assert per < 0.1 and p50 < 0.5 and most <= 6


def test_model_of_w2_unknown_duration_stays_within_the_cap_and_under_half_a_read() -> None:
    per, p50, most = _simulate(2000, 60.0, 6.0, 1.0, known_expected=False)
    assert per < 0.5 and p50 < 1.0 and most <= 6


def test_paged_safety_poll_comes_after_the_expected_finish() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert paged_delay(created_at=now, polls=0, expected=60.0, now=now) == 63.0 + 15.0
    assert paged_delay(created_at=now, polls=0, expected=4.0, now=now) == 4.2 + 5.0
    assert paged_delay(created_at=now, polls=0, expected=None, now=now) == SAFETY_POLL
    assert paged_delay(created_at=now - timedelta(seconds=70), polls=1, expected=60.0, now=now) == MAX_POLL_DELAY
    assert paged_delay(created_at=now, polls=0, expected=1000.0, now=now) == PAGED_MAX_DELAY


def test_page_size_is_replicates() -> None:
    assert PAGE_SIZE == 100


def test_only_the_polling_mode_reads_pages() -> None:
    assert Paged().reads_pages and not Webhooks("https://genqueue.example.com").reads_pages
    assert not Polling().reads_pages


def test_an_observation_carries_no_input_or_logs_and_parses_back() -> None:
    raw = {"id": "p1", "status": "succeeded", "model": "o/m", "version": "v1",
           "input": {"prompt": "x", "api_key": "sk_test_fake_secret"}, "logs": "api_key=sk_test_fake_secret",
           "output": "https://replicate.delivery/a/out-0.png", "error": None, "data_removed": False,
           "created_at": "2026-01-01T00:00:00.123456789Z", "completed_at": "2026-01-01T00:01:00Z",
           "urls": {"get": "https://api.replicate.com/v1/predictions/p1"},
           "metrics": {"predict_time": 59.5, "total_time": 60.0}}
    data = observation(parse_prediction(raw))
    assert "input" not in data and "logs" not in data and "sk_test_fake" not in json.dumps(data)
    back = parse_prediction(data)
    assert (back.status, back.output, back.total_time, back.urls_get) == (
        "succeeded", raw["output"], 60.0, raw["urls"]["get"])  # type: ignore[index]
    assert back.created_at == datetime(2026, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)
