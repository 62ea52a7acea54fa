"""The dispatch order (genqueue.sched.plan): pure, no services."""

from __future__ import annotations

from genqueue.sched.plan import (
    Depth,
    Fairness,
    KeyRule,
    Lane,
    effective_priority,
    jobs_ahead,
    plan,
    start_delay,
)

NOW = 10_000.0


def lane(priority: int, key: str, n: int, *, start: float = NOW - 10, prefix: str | None = None) -> Lane:
    name = prefix or f"{key}{priority}-"
    heads = tuple((f"{name}{i}", start + i * 0.001) for i in range(n))
    return Lane(priority, key, heads, n)


def ids(picks: list) -> list[str]:  # type: ignore[type-arg]
    return [p.job_id for p in picks]


def test_higher_priority_goes_first_and_fifo_within_a_lane() -> None:
    picks = plan([lane(5, "a", 3), lane(9, "a", 2)], 5, NOW, rules={}, active={}, fairness=Fairness())
    assert ids(picks) == ["a9-0", "a9-1", "a5-0", "a5-1", "a5-2"]


def test_a_new_urgent_job_passes_a_backlog_of_any_size() -> None:
    backlog = Lane(5, "a", tuple((f"b{i}", NOW - 100 + i) for i in range(4)), 3000)
    urgent = lane(9, "a", 1, start=NOW)
    assert ids(plan([backlog, urgent], 1, NOW, rules={}, active={}, fairness=Fairness())) == ["a9-0"]


def test_aging_raises_a_waiting_job_one_level_per_aging_period() -> None:
    assert effective_priority(0, NOW - 299, NOW, 300) == 0
    assert effective_priority(0, NOW - 300, NOW, 300) == 1
    assert effective_priority(3, NOW - 10_000, NOW, 300) == 9  # capped
    # A priority-0 job that waited 9 aging periods competes at 9 and, older, goes before new 9s.
    old_low = lane(0, "a", 1, start=NOW - 9 * 300)
    new_high = lane(9, "b", 1, start=NOW)
    assert ids(plan([new_high, old_low], 1, NOW, rules={}, active={}, fairness=Fairness(), aging=300)) == ["a0-0"]


def test_keys_share_the_budget_round_robin_and_a_newcomer_goes_at_once() -> None:
    fair = Fairness()
    a = lane(5, "a", 4, start=NOW - 100)
    assert ids(plan([a], 2, NOW, rules={}, active={}, fairness=fair)) == ["a5-0", "a5-1"]
    fair.charge("a", 1)
    fair.charge("a", 1)  # the dispatcher charges what it sent
    b = lane(5, "b", 2, start=NOW)
    picks = ids(plan([lane(5, "a", 4, start=NOW - 100, prefix="a5-x"), b], 4, NOW, rules={}, active={},
                     fairness=fair))
    # B joined at A's pass: its first job goes second (a tie goes to the older job), not after A's backlog.
    assert picks == ["a5-x0", "b5-0", "a5-x1", "b5-1"]


def test_weights_share_the_budget_in_proportion() -> None:
    picks = plan([lane(5, "a", 40), lane(5, "b", 40)], 30, NOW, rules={"a": KeyRule(weight=2)}, active={},
                 fairness=Fairness())
    got = [p.lane.key for p in picks]
    assert got.count("a") == 20 and got.count("b") == 10


def test_a_key_at_its_max_running_is_skipped_until_one_ends() -> None:
    rules = {"a": KeyRule(max_running=2)}
    picks = plan([lane(5, "a", 5), lane(5, "b", 5)], 6, NOW, rules=rules, active={"a": 1}, fairness=Fairness())
    assert [p.lane.key for p in picks].count("a") == 1  # 1 running + 1 dispatched = 2
    assert plan([lane(5, "a", 5)], 3, NOW, rules=rules, active={"a": 2}, fairness=Fairness()) == []


def test_plan_does_not_charge_the_fairness_it_is_given() -> None:
    fair = Fairness()
    plan([lane(5, "a", 3), lane(5, "b", 3)], 4, NOW, rules={}, active={}, fairness=fair)
    assert fair.passes == {"a": 0.0, "b": 0.0}


def test_jobs_ahead_counts_higher_levels_and_fair_shares_at_its_own() -> None:
    depths = [Depth(9, "a", 10, 9), Depth(5, "a", 3000, 5), Depth(5, "b", 20, 5), Depth(1, "c", 50, 1)]
    # B's 5th job (rank 4): 10 urgent ones, 4 of its own, and 5 of A's (one per turn of B's), none of C's.
    assert jobs_ahead(depths, priority=5, key="b", rank=4, effective=5, rules={}) == 10 + 4 + 5
    # With A at weight 3, three of A's per turn of B's.
    assert jobs_ahead(depths, priority=5, key="b", rank=4, effective=5, rules={"a": KeyRule(weight=3)}) == 10 + 4 + 15
    # A's 100th job: B has only 20 to interleave.
    assert jobs_ahead(depths, priority=5, key="a", rank=99, effective=5, rules={}) == 10 + 99 + 20


def test_start_delay_follows_the_rate_and_a_keys_running_limit() -> None:
    assert start_delay(95, 9.5) == 10.0
    assert start_delay(10, 0.0) is None
    # 5 at a time, 10 s each: 0.5 starts per second for that key, whatever the budget.
    assert start_delay(20, 9.5, key_running_limit=5, key_ahead=20, expected_duration=10.0) == 40.0
