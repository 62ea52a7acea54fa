"""The budget rule (worker.budget) with plain values, then closed loops against the simulator's own
token bucket on a virtual clock: what the headers teach never runs the fleet into 429s, and a normal
account keeps its full rate. No services."""

from __future__ import annotations

import pytest

from genqueue.simulator.config import LIMIT_PRESETS, SimConfig
from genqueue.simulator.ratelimit import RateLimiter as AccountBucket
from genqueue.worker.budget import (
    DOCUMENTED_PER_MIN,
    GROWTH,
    Account,
    Seen,
    ceiling_per_s,
    kind_of,
    learn,
    pace,
    parse_seen,
    starting,
)
from genqueue.worker.ratelimit import HEADROOM

NORMAL = ceiling_per_s("create", None)  # 10/s


def test_start_is_the_documented_budget_or_a_lower_cap() -> None:
    assert starting("create", None) == Account(600 / 60)
    assert starting("read", None) == Account(3000 / 60)
    assert starting("create", 60) == Account(1.0)
    assert starting("create", 6000) == Account(10.0)  # a higher cap is reached only on proof
    assert ceiling_per_s("create", 6000) == 100.0 and ceiling_per_s("read", None) == 50.0


def test_low_credit_answer_gives_its_exact_rate_and_empties_the_bucket() -> None:
    out = learn(starting("create", None), Seen(201, remaining=0, reset=10), NORMAL)
    assert out.account == Account(0.1, capacity=1)  # 6/min
    assert out.tokens_at_most == 0.0
    rate, burst = pace(out.account.rate, HEADROOM)
    assert rate * 60 == pytest.approx(6 * HEADROOM) and burst == 1.0


def test_normal_account_keeps_the_full_rate() -> None:
    out = learn(starting("create", None), Seen(201, remaining=599, reset=1), NORMAL)
    assert out.account == Account(NORMAL, capacity=600)
    assert out.tokens_at_most == 599.0  # above any burst of ours: no effect


def test_a_drained_burst_seen_full_before_is_read_as_its_deficit() -> None:
    # The account was seen at 600 and now reports 0 left, full in 60 s: 599 requests in 60 s.
    out = learn(Account(NORMAL, capacity=600), Seen(201, remaining=0, reset=60), NORMAL)
    assert out.account.rate == pytest.approx(599 / 60)
    # Never seen full: only the request just taken is sure, so the rate is low until it shows spare room.
    unknown = learn(Account(NORMAL), Seen(201, remaining=0, reset=60), NORMAL)
    assert unknown.account.rate == pytest.approx(1 / 60)


def test_spare_room_within_a_second_climbs_back_to_the_ceiling_only() -> None:
    account = Account(0.1, capacity=1)
    seen = Seen(201, remaining=5, reset=1)
    steps = 0
    while account.rate < NORMAL:
        account = learn(account, seen, NORMAL).account
        steps += 1
    assert account.rate == NORMAL and steps < 30
    assert learn(account, seen, NORMAL).account.rate == NORMAL  # never above the ceiling
    # Empty after our take, yet full within a second: at least one request a second, no climb.
    slow = learn(Account(0.1, 1), Seen(201, remaining=0, reset=1), NORMAL).account
    assert slow.rate == 1.0
    assert GROWTH > 1


def test_429_forgets_the_capacity_and_empties_the_bucket_but_keeps_the_rate() -> None:
    out = learn(Account(NORMAL, capacity=600), Seen(429, remaining=0, reset=10), NORMAL)
    assert out.account == Account(NORMAL, capacity=0) and out.tokens_at_most == 0.0
    # The account lost its credit: the next granted answer is read without the old capacity.
    after = learn(out.account, Seen(201, remaining=0, reset=10), NORMAL)
    assert after.account.rate == pytest.approx(0.1)


def test_errors_and_missing_headers_teach_no_rate() -> None:
    current = Account(NORMAL, capacity=600)
    assert learn(current, Seen(503, remaining=3, reset=40), NORMAL).account.rate == NORMAL
    assert learn(current, Seen(503, remaining=3, reset=40), NORMAL).tokens_at_most == 3.0
    assert learn(current, Seen(200, remaining=None, reset=5), NORMAL).account == current
    assert learn(current, Seen(200, remaining=None, reset=5), NORMAL).tokens_at_most is None


def test_parse_seen_is_lenient() -> None:
    assert parse_seen(201, "0", "10") == Seen(201, 0, 10.0)
    assert parse_seen(200, " 12 ", "1.5") == Seen(200, 12, 1.5)
    assert parse_seen(200, None, "x") == Seen(200, None, None)
    assert parse_seen(200, "-1", "nan") == Seen(200, None, None)
    assert kind_of("create") == "create" and {kind_of(e) for e in ("get", "cancel", "list")} == {"read"}


class Fleet:
    """The fleet's bucket as worker.ratelimit keeps it (the Lua scripts), on a virtual clock."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.account = starting(kind, None)
        self.tokens, self.ts = 0.0, 0.0
        self.known = False  # nothing learned: one request, the next waits for its answer
        self.probing = False

    def _settle(self, now: float) -> None:
        rate, burst = pace(self.account.rate, HEADROOM)
        self.tokens = min(burst, self.tokens + (now - self.ts) * rate)
        self.ts = now

    def acquire(self, now: float) -> float:
        if not self.known:
            if self.probing:
                return 0.05  # (the probe's answer ends the wait)
            self.probing, self.tokens, self.ts = True, 0.0, now
            return 0.0
        self._settle(now)
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / pace(self.account.rate, HEADROOM)[0]

    def observe(self, now: float, seen: Seen) -> None:
        self._settle(now)
        self.known = True
        out = learn(self.account, seen, ceiling_per_s(self.kind, None))
        self.account = out.account
        self.tokens = min(self.tokens, pace(out.account.rate, HEADROOM)[1])
        if out.tokens_at_most is not None:
            self.tokens = min(self.tokens, out.tokens_at_most)


def run(preset: str, jobs: int, latency: float = 0.05, workers: int = 4) -> tuple[int, float, Fleet]:
    """`workers` senders with `jobs` creates to make, each answer arriving `latency` s after its grant.
    Returns (429s, seconds until the last create was granted by the account, fleet)."""
    now = [0.0]
    account = AccountBucket(SimConfig(**LIMIT_PRESETS[preset]), clock=lambda: now[0])
    fleet = Fleet("create")
    pending = jobs
    ready = [0.0] * workers  # when each sender tries next
    in_flight: list[tuple[float, int, Seen]] = []  # (answer time, sender, what it says)
    last_ok = 0.0
    while pending or in_flight:
        next_try = min(ready) if pending else float("inf")
        answer = min(in_flight, key=lambda a: a[0]) if in_flight else None
        if answer is not None and answer[0] <= next_try:  # an answer reaches the fleet
            in_flight.remove(answer)
            now[0] = answer[0]
            fleet.observe(now[0], answer[2])
            continue
        sender = ready.index(next_try)
        now[0] = next_try
        wait = fleet.acquire(now[0])
        if wait > 0:
            ready[sender] = now[0] + max(wait, 1e-3)  # a countdown is never shorter
            continue
        decision = account.take("r8_sim_fake_token", "create")
        seen = Seen(201 if decision.allowed else 429, decision.remaining, float(decision.reset))
        in_flight.append((now[0] + latency, sender, seen))
        ready[sender] = now[0] + latency  # the sender is busy until its answer
        if decision.allowed:
            pending -= 1
            last_ok = now[0]
        else:  # the caller pauses the whole fleet for Retry-After
            ready = [max(r, now[0] + decision.retry_after) for r in ready]
    return account.throttled, last_ok, fleet


def test_closed_loop_low_credit_is_paced_at_six_a_minute_without_a_429_storm() -> None:
    for latency in (0.01, 0.3, 3.0):  # however long the first answer takes, nothing is sent before it
        assert run("low_credit", jobs=8, latency=latency, workers=8)[0] == 0
    throttled, seconds, fleet = run("low_credit", jobs=30)
    assert throttled == 0
    assert fleet.account.rate == pytest.approx(0.1)
    per_min = (30 - 1) / seconds * 60  # 29 intervals between the first create (t=0) and the last
    assert 5.0 < per_min <= 6.0 + 1e-9


def test_closed_loop_normal_account_reaches_its_full_rate() -> None:
    throttled, seconds, fleet = run("normal", jobs=2000)
    assert throttled == 0
    assert fleet.account.rate == DOCUMENTED_PER_MIN["create"] / 60
    per_min = 2000 / seconds * 60
    assert per_min >= HEADROOM * 600 * 0.97  # the headroom, and a bucket that starts with one request


def test_rate_settings_are_optional_caps(monkeypatch: pytest.MonkeyPatch) -> None:
    from genqueue.core.settings import ConfigError, load_settings

    monkeypatch.delenv("GENQUEUE_READ_RATE_PER_MIN", raising=False)
    monkeypatch.setenv("GENQUEUE_CREATE_RATE_PER_MIN", "")
    s = load_settings(_env_file=None)
    assert s.create_rate_per_min is None and s.read_rate_per_min is None and s.create_budget_per_min == 600
    monkeypatch.setenv("GENQUEUE_CREATE_RATE_PER_MIN", "120")
    assert load_settings(_env_file=None).create_budget_per_min == 120
    monkeypatch.setenv("GENQUEUE_CREATE_RATE_PER_MIN", "0")
    with pytest.raises(ConfigError, match="GENQUEUE_CREATE_RATE_PER_MIN"):
        load_settings(_env_file=None)
