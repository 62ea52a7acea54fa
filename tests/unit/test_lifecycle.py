"""Every step decision of `genqueue.worker.lifecycle`, with plain values: no database, no Redis, no
HTTP. A case is a snapshot (`job(...)`), what Replicate said (`prediction(...)`), a time and a policy;
the assertion is the Decision. To add one, copy the nearest test and change the values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from genqueue.models.status import ErrorCode, JobStatus
from genqueue.worker.lifecycle import create, follow, store
from genqueue.worker.lifecycle.decision import (
    EARLY,
    MAX_DELIVERIES,
    Decision,
    Deliveries,
    Next,
    Step,
    fail,
    retry_delay,
    wait,
)
from genqueue.worker.lifecycle.policy import (
    FIRST_POLL,
    MAX_POLL_DELAY,
    SAFETY_POLL,
    Policy,
    Polling,
    Webhooks,
    poll_delay,
)
from genqueue.worker.lifecycle.snapshot import JobSnapshot
from genqueue.worker.replicate.types import Prediction

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
POLLING = Policy(follow=Polling(), create_window=timedelta(seconds=47))
WEBHOOKS = Policy(follow=Webhooks("https://gq.example"), create_window=timedelta(seconds=47))
THREADS = Policy(follow=Polling(), create_window=timedelta(seconds=52), create_wait_max=5.0)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def job(status: JobStatus = JobStatus.QUEUED, **kw: Any) -> JobSnapshot:
    values: dict[str, Any] = dict(
        id="job1", status=status, target="version", model="acme/painter", version="acme/painter:abc",
        deployment=None, input_public={"prompt": "p"}, input_sealed=None, created_at=T0, deadline_at=None,
        cancel_requested_at=None, prediction_id=None, prediction_status=None, prediction_get_url=None,
        prediction_cancel_url=None, prediction_created_at=None, prediction_started_at=None, completed_at=None,
        submit_started_at=None, create_in_flight_until=None, detected_at=None, next_check_at=None,
        output_refs=None, polls=0, attempts=0, deliveries=0)
    values.update(kw)
    return JobSnapshot(**values)


def running(**kw: Any) -> JobSnapshot:
    return job(JobStatus.RUNNING, prediction_id="p1", prediction_status="processing",
               prediction_get_url="https://api.example/v1/predictions/p1",
               prediction_created_at=at(1), submit_started_at=at(0.5), **kw)


def prediction(status: str = "processing", **kw: Any) -> Prediction:
    values: dict[str, Any] = dict(
        id="p1", status=status, model="acme/painter", version="abc", output=None, error=None,
        data_removed=False, created_at=at(1), started_at=at(1.5), completed_at=None,
        urls_get="https://api.example/v1/predictions/p1", urls_cancel="https://api.example/v1/predictions/p1/cancel",
        predict_time=None, total_time=None, input_digest=None)
    if status in ("succeeded", "failed", "canceled", "aborted"):
        values.update(completed_at=at(4), predict_time=2.5, total_time=3.0)
    values.update(kw)
    return Prediction(**values)


# --- before the create ------------------------------------------------------------------------------

@pytest.mark.parametrize("status", [JobStatus.RUNNING, JobStatus.STORING, JobStatus.SUCCEEDED, JobStatus.CANCELED])
def test_submit_message_for_a_job_past_submitting_is_dropped(status: JobStatus) -> None:
    assert create.before_create(job(status), at(10)) is None


def test_submit_message_before_a_submitting_jobs_check_time_is_a_duplicate() -> None:
    j = job(JobStatus.SUBMITTING, next_check_at=at(10), submit_started_at=at(0))
    assert create.before_create(j, at(10) - EARLY - timedelta(seconds=0.01)) is None
    assert create.before_create(j, at(10) - EARLY) is create.Action.RECONCILE


def test_a_queued_job_is_created_only_by_a_dispatched_message() -> None:
    # The queued job's check time is the lane audit's, not a chain's: a dispatched message creates
    # whenever it comes; any other message puts the job back in its lane (idempotent).
    j = job(next_check_at=at(60))
    assert create.before_create(j, at(1), dispatched=True) is create.Action.CREATE
    assert create.before_create(j, at(1)) is create.Action.ENQUEUE
    assert create.before_create(job(), at(1)) is create.Action.ENQUEUE


def test_queued_job_past_its_deadline_fails_without_a_create() -> None:
    d = create.before_create(job(deadline_at=at(5)), at(5), dispatched=True)
    assert isinstance(d, Decision)
    assert d.to is JobStatus.FAILED and d.values["error_code"] == ErrorCode.DEADLINE_EXCEEDED
    assert d.values["finished_at"] == at(5) and d.values["end_to_end_time"] == 5.0


def test_job_whose_submit_keeps_dying_is_poison() -> None:
    d = create.before_create(job(deliveries=MAX_DELIVERIES), at(1))
    assert isinstance(d, Decision) and d.values["error_code"] == ErrorCode.POISON


def test_submitting_job_with_a_create_still_in_flight_waits_for_it() -> None:
    j = job(JobStatus.SUBMITTING, submit_started_at=at(0), create_in_flight_until=at(47))
    d = create.before_create(j, at(7))
    assert d == wait(j, Step.SUBMIT, 40.0, at(7))
    assert isinstance(d, Decision) and d.deliveries is Deliveries.KEEP and d.then == Next(Step.SUBMIT, 40.0)


def test_submitting_job_whose_create_went_unanswered_reconciles_first() -> None:
    j = job(JobStatus.SUBMITTING, submit_started_at=at(0), create_in_flight_until=None)
    assert create.before_create(j, at(60)) is create.Action.RECONCILE
    assert create.reconcile_since(j) == at(0) - create.RECONCILE_MARGIN


def test_claim_of_a_queued_job_moves_it_to_submitting_and_counts_a_delivery() -> None:
    d = create.claim(job(), at(2), POLLING, "host:12:ab")
    assert d.expect == (JobStatus.QUEUED,) and d.to is JobStatus.SUBMITTING
    assert d.values == {"submit_started_at": at(2), "create_in_flight_until": at(49), "next_check_at": at(49),
                        "claimed_by": "host:12:ab"}  # the worker whose death ends the window early
    assert d.deliveries is Deliveries.COUNT and d.guard == {}


def test_reclaim_is_guarded_by_the_claim_that_was_read() -> None:
    j = job(JobStatus.SUBMITTING, submit_started_at=at(0), deliveries=2)
    d = create.claim(j, at(60), POLLING)
    assert d.to is None and d.guard == {"submit_started_at": at(0), "deliveries": 2}
    assert create.claimed(j, at(60), POLLING).deliveries == 3


def test_create_args_carry_the_target_and_replicates_own_deadline() -> None:
    args = create.create_args(job(deadline_at=at(100)), at(40), POLLING, expected=None)
    assert args == {"version": "acme/painter:abc", "model": None, "deployment": None, "cancel_after": 60.0,
                    "wait": None}
    # Replicate's floor for Cancel-After is 5 s.
    assert create.create_args(job(deadline_at=at(42)), at(40), POLLING, None)["cancel_after"] == 5.0


def test_create_args_with_webhooks_ask_only_for_the_terminal_event() -> None:
    args = create.create_args(job(target="model", model="acme/painter", version=None), at(0), WEBHOOKS, None)
    assert args["model"] == "acme/painter" and args["version"] is None
    assert args["webhook"] == "https://gq.example/v1/replicate/webhook?job=job1"
    assert args["webhook_events_filter"] == ["completed"]


def test_prefer_wait_only_on_threads_workers_for_models_known_to_be_quick() -> None:
    assert POLLING.create_wait(1.0) is None
    assert THREADS.create_wait(None) is None  # never observed: no wait
    assert THREADS.create_wait(1.0) == 3  # 1.2 x expected + 1, rounded up
    assert THREADS.create_wait(6.0) is None  # too slow to hold a thread for


# --- the create's answer ----------------------------------------------------------------------------

def test_created_prediction_is_followed_by_a_poll_at_the_models_usual_finish() -> None:
    j = create.claimed(job(), at(0), POLLING)
    d = create.created(j, prediction("starting", created_at=at(1)), at(1), POLLING, expected=2.0)
    assert d.expect == (JobStatus.SUBMITTING,) and d.to is JobStatus.RUNNING
    assert d.values["attempts"] == 1 and d.values["submitted_at"] == at(1)
    assert d.values["create_in_flight_until"] is None and d.values["prediction_id"] == "p1"
    assert d.then.step is Step.POLL and d.then.countdown == pytest.approx(2.15)
    assert d.values["next_check_at"] == at(1) + timedelta(seconds=d.then.countdown)


def test_created_with_webhooks_sends_no_poll_and_sets_the_safety_net() -> None:
    j = create.claimed(job(), at(0), WEBHOOKS)
    d = create.created(j, prediction("starting"), at(1), WEBHOOKS, expected=2.0)
    assert d.then == Next() and d.values["next_check_at"] == at(1 + SAFETY_POLL)


def test_adopted_prediction_is_not_counted_as_a_new_attempt() -> None:
    j = job(JobStatus.SUBMITTING, attempts=1)
    d = create.created(j, prediction("processing"), at(90), POLLING, None, adopted=True)
    assert d.values["attempts"] == 1 and d.log is not None and d.log.startswith("adopted")


def test_create_that_answered_finished_goes_straight_to_storing_inline() -> None:
    j = create.claimed(job(), at(0), THREADS)
    p = prediction("succeeded", output=["https://files.example/a.png"])
    d = create.created(j, p, at(4.1), THREADS, expected=3.0)
    assert d.expect == (JobStatus.SUBMITTING,) and d.to is JobStatus.STORING
    assert d.values["output_refs"] == ["https://files.example/a.png"] and d.values["attempts"] == 1
    assert d.then == Next(Step.STORE, inline=True) and d.observed_duration == 3.0


def test_create_that_surely_never_reached_replicate_goes_back_to_queued() -> None:
    j = job(JobStatus.SUBMITTING, submit_started_at=at(0))
    d = create.create_unanswered(j, maybe_sent=False, delay=2.0, now=at(1))
    assert d.to is JobStatus.QUEUED and d.guard == {"submit_started_at": at(0)}
    assert d.then == Next(Step.SUBMIT, 2.0) and "attempts" not in d.values


def test_create_that_may_have_landed_stays_submitting_to_be_reconciled() -> None:
    j = job(JobStatus.SUBMITTING, submit_started_at=at(0), attempts=0)
    d = create.create_unanswered(j, maybe_sent=True, delay=1.0, now=at(30))
    assert d.to is None and d.values["attempts"] == 1 and d.values["create_in_flight_until"] is None
    assert d.deliveries is Deliveries.KEEP
    # The next delivery finds no create in flight: it looks the prediction up before creating.
    assert create.before_create(j.replace(create_in_flight_until=None), at(31)) is create.Action.RECONCILE


@pytest.mark.parametrize(("status_code", "code"), [(422, ErrorCode.INPUT_REJECTED), (403, ErrorCode.REPLICATE_ERROR)])
def test_create_refused_fails_the_job(status_code: int, code: ErrorCode) -> None:
    d = create.create_refused(job(JobStatus.SUBMITTING), status_code, "no", at(1))
    assert d.to is JobStatus.FAILED and d.values["error_code"] == code


# --- following the prediction -----------------------------------------------------------------------

def test_poll_message_for_a_job_not_running_is_dropped() -> None:
    assert follow.before_look(job(JobStatus.STORING), at(5)) is None
    assert follow.before_look(job(JobStatus.RUNNING), at(5)) is None  # no urls.get yet


def test_early_poll_is_a_duplicate_unless_a_cancel_is_asked() -> None:
    j = running(next_check_at=at(10))
    assert follow.before_look(j, at(5)) is None
    assert follow.before_look(j.replace(cancel_requested_at=at(4)), at(5)) is follow.Look.CANCEL
    assert follow.before_look(j, at(10)) is follow.Look.GET


def test_poll_that_keeps_dying_is_poison() -> None:
    d = follow.before_look(running(deliveries=MAX_DELIVERIES), at(5))
    assert isinstance(d, Decision) and d.values["error_code"] == ErrorCode.POISON


def test_no_deadline_never_cancels() -> None:
    assert not follow.past_replicate_deadline(running(), at(10_000))


def test_own_cancel_waits_for_replicates_deadline_plus_grace() -> None:
    j = running(deadline_at=at(30))  # Replicate was told Cancel-After 29 s at the create: its deadline is ours
    grace = follow.DEADLINE_GRACE.total_seconds()
    assert not follow.past_replicate_deadline(j, at(30 + grace - 0.01))
    assert follow.past_replicate_deadline(j, at(30 + grace))
    assert follow.before_look(j, at(30 + grace)) is follow.Look.CANCEL


def test_short_deadline_uses_replicates_five_second_floor() -> None:
    j = running(deadline_at=at(5)).replace(prediction_created_at=at(3))  # told 5 s: it aborts at 8 s
    grace = follow.DEADLINE_GRACE.total_seconds()
    assert not follow.past_replicate_deadline(j, at(8 + grace - 0.01))
    assert follow.past_replicate_deadline(j, at(8 + grace))


def test_running_prediction_is_looked_at_again_later() -> None:
    d = follow.observed(running(polls=3), prediction("processing"), at(20), POLLING, expected=None)
    assert d.to is None and d.values["polls"] == 4
    assert d.then == Next(Step.POLL, FIRST_POLL * 1.25 ** 3)


def test_succeeded_prediction_moves_to_storing_with_its_file_references() -> None:
    j = running()
    d = follow.observed(j, prediction("succeeded", output="https://files.example/a.png"), at(4.2), POLLING, None)
    assert d.expect == (JobStatus.RUNNING,) and d.to is JobStatus.STORING
    assert d.values["output_refs"] == ["https://files.example/a.png"] and d.values["detected_at"] == at(4.2)
    assert d.values["predict_time"] == 2.5 and d.values["total_time"] == 3.0
    assert d.then == Next(Step.STORE, inline=True) and d.observed_duration == 3.0


def test_with_webhooks_copies_go_through_the_store_queue() -> None:
    d = follow.observed(running(), prediction("succeeded", output=["https://f/a.png"]), at(5), WEBHOOKS, None)
    assert d.then == Next(Step.STORE, inline=False)


@pytest.mark.parametrize(("output", "removed", "code"), [
    (None, False, ErrorCode.OUTPUT_INVALID), ({"text": "hi"}, False, ErrorCode.OUTPUT_INVALID),
    (None, True, ErrorCode.OUTPUT_EXPIRED)])
def test_succeeded_without_file_references_fails(output: Any, removed: bool, code: ErrorCode) -> None:
    d = follow.observed(running(), prediction("succeeded", output=output, data_removed=removed), at(5), POLLING, None)
    assert d.to is JobStatus.FAILED and d.values["error_code"] == code


def test_failed_prediction_fails_the_job_with_replicates_text_and_timings() -> None:
    d = follow.observed(running(), prediction("failed", error="CUDA out of memory"), at(4.5), POLLING, None)
    assert d.to is JobStatus.FAILED and d.values["error_code"] == ErrorCode.PREDICTION_FAILED
    assert d.values["error_message"] == "CUDA out of memory"
    # The timings read the times this look saw, not the snapshot's (which had none yet).
    assert d.values["detection_lag"] == 0.5 and d.values["start_time"] == 0.5 and d.values["queue_time"] == 0.5
    assert d.then == Next() and d.observed_duration is None


@pytest.mark.parametrize(("deadline", "code"), [(None, ErrorCode.PREDICTION_ABORTED),
                                                (at(3), ErrorCode.DEADLINE_EXCEEDED)])
def test_aborted_prediction(deadline: datetime | None, code: ErrorCode) -> None:
    d = follow.observed(running(deadline_at=deadline), prediction("aborted", started_at=None), at(5), POLLING, None)
    assert d.to is JobStatus.FAILED and d.values["error_code"] == code


def test_canceled_prediction_is_canceled_only_when_a_user_asked() -> None:
    asked = follow.observed(running(cancel_requested_at=at(2)), prediction("canceled"), at(5), POLLING, None)
    assert asked.to is JobStatus.CANCELED and asked.values["error_code"] is None
    theirs = follow.observed(running(), prediction("canceled"), at(5), POLLING, None)
    assert theirs.to is JobStatus.CANCELED and theirs.values["error_code"] == ErrorCode.PREDICTION_CANCELED
    deadline = follow.observed(running(deadline_at=at(3)), prediction("canceled"), at(5), POLLING, None)
    assert deadline.to is JobStatus.FAILED and deadline.values["error_code"] == ErrorCode.DEADLINE_EXCEEDED


def test_push_applies_only_to_the_running_job_following_that_prediction() -> None:
    p = prediction("succeeded", output=["https://f/a.png"])
    assert follow.pushed(running(), p, at(5), WEBHOOKS) is not None
    assert follow.pushed(None, p, at(5), WEBHOOKS) is None
    assert follow.pushed(running().replace(prediction_id="p0"), p, at(5), WEBHOOKS) is None  # an older one
    assert follow.pushed(running().replace(status=JobStatus.STORING), p, at(5), WEBHOOKS) is None  # a duplicate
    assert follow.pushed(running(), prediction("processing"), at(5), WEBHOOKS) is None


def test_prediction_gone_from_replicate_is_lost() -> None:
    assert follow.read_refused(running(), 404, "nf", at(5)).values["error_code"] == ErrorCode.LOST
    assert follow.read_refused(running(), 401, "no", at(5)).values["error_code"] == ErrorCode.REPLICATE_ERROR


# --- the poll schedule ------------------------------------------------------------------------------

def test_first_look_is_just_after_the_models_usual_finish() -> None:
    assert poll_delay(status="starting", created_at=at(0), polls=0, expected=10.0, now=at(1)) == pytest.approx(9.55)


def test_past_the_usual_finish_looks_back_off_to_a_cap() -> None:
    assert poll_delay(status="processing", created_at=at(0), polls=0, expected=1.0, now=at(5)) == FIRST_POLL
    assert poll_delay(status="starting", created_at=at(0), polls=9, expected=None, now=at(5)) == FIRST_POLL
    assert poll_delay(status="processing", created_at=at(0), polls=50, expected=None, now=at(5)) == MAX_POLL_DELAY


def test_webhook_safety_net_is_never_sooner_than_safety_poll() -> None:
    hooks = Webhooks("https://gq.example")
    assert hooks.next_check(status="processing", created_at=at(0), polls=0, expected=1.0, now=at(1)) == SAFETY_POLL
    # A long model: polling would look every 30 s; with pushes, only the safety net.
    assert poll_delay(status="processing", created_at=at(0), polls=0, expected=300.0, now=at(1)) == MAX_POLL_DELAY
    assert hooks.next_check(status="processing", created_at=at(0), polls=0, expected=300.0,
                            now=at(1)) == SAFETY_POLL


# --- storing ----------------------------------------------------------------------------------------

def test_store_begins_by_counting_the_delivery() -> None:
    # ...and holds the job for its lease: the sweeper does not take a copy in progress for lost.
    assert store.begin(at(5)) == Decision(expect=(JobStatus.STORING,), values={"next_check_at": at(20)},
                                          deliveries=Deliveries.COUNT)
    storing = job(JobStatus.STORING)
    assert store.poisoned(storing.replace(deliveries=MAX_DELIVERIES), at(1)) is None
    poisoned = store.poisoned(storing.replace(deliveries=MAX_DELIVERIES + 1), at(1))
    assert poisoned is not None and poisoned.values["error_code"] == ErrorCode.POISON


def test_copy_failures() -> None:
    j = job(JobStatus.STORING, completed_at=at(0))
    refused = store.copy_failed(j, store.CopyFailure.REFUSED, "private address", at(1), removed=False, delay=0)
    assert refused.values["error_code"] == ErrorCode.OUTPUT_REFUSED
    gone = store.copy_failed(j, store.CopyFailure.EXPIRED, "404", at(1), removed=True, delay=1)
    assert gone.values["error_code"] == ErrorCode.OUTPUT_EXPIRED
    lag = store.copy_failed(j, store.CopyFailure.EXPIRED, "404", at(1), removed=False, delay=1.5)
    assert lag.to is None and lag.then == Next(Step.STORE, 1.5) and lag.deliveries is Deliveries.RESET
    late = store.copy_failed(j, store.CopyFailure.TRANSIENT, "timeout", at(3601), removed=False, delay=1)
    assert late.values["error_code"] == ErrorCode.OUTPUT_EXPIRED  # past Replicate's one-hour retention


def test_storage_failure_is_waited_out_with_a_growing_delay() -> None:
    # Storing since t=0 (detected_at), deadline at t=3600: S3 away, disk full.
    j = job(JobStatus.STORING, completed_at=at(0), detected_at=at(0), deadline_at=at(3600))
    early = store.storage_failed(j, "No space left on device", "output 0: write to /srv/x failed", at(5), delay=1.5)
    assert early.to is None and early.deliveries is Deliveries.RESET
    assert early.then == Next(Step.STORE, 1.5) and early.values["next_check_at"] == at(6.5)
    assert early.log is not None and "/srv/x" in early.log  # the whole error goes to the log
    # Failing for 200 s: a tenth of it, so a long outage costs fewer downloads than one retry per 2 s.
    assert store.storage_failed(j, "r", "d", at(200), delay=1.5).then == Next(Step.STORE, 20.0)
    assert store.storage_failed(j, "r", "d", at(2000), delay=1.5).then.countdown == store.MAX_STORAGE_DELAY
    # Never a wait past the deadline: one last try right at it.
    assert store.storage_failed(j, "r", "d", at(3590), delay=1.5).then == Next(Step.STORE, 10.0)


def test_storage_failure_fails_the_job_at_its_deadline_without_naming_the_storage() -> None:
    j = job(JobStatus.STORING, completed_at=at(0), detected_at=at(0), deadline_at=at(30))
    d = store.storage_failed(j, "No space left on device", "output 0: write to /srv/out/jobs/x failed", at(30),
                             delay=1.0)
    assert d.to is JobStatus.FAILED and d.values["error_code"] == ErrorCode.STORAGE_ERROR
    assert d.values["error_message"] == "outputs could not be stored before the job's deadline: No space left on device"
    assert d.values["next_check_at"] is None
    # Without a deadline, Replicate's retention bounds the wait (the outputs are gone after it).
    no_deadline = job(JobStatus.STORING, completed_at=at(0), detected_at=at(0))
    late = store.storage_failed(no_deadline, "EndpointConnectionError", "d", at(3600), delay=1.0)
    assert late.values["error_code"] == ErrorCode.STORAGE_ERROR and "retention" in late.values["error_message"]
    assert store.storage_failed(no_deadline, "r", "d", at(3599), delay=1.0).to is None


def test_stored_job_succeeds_with_its_timings() -> None:
    j = job(JobStatus.STORING, submit_started_at=at(0.2), prediction_created_at=at(0.3),
            prediction_started_at=at(1), completed_at=at(3), detected_at=at(3.1), output_refs=["a", "b"])
    d = store.stored(j, at(3.5))
    assert d.to is JobStatus.SUCCEEDED and d.values["finished_at"] == at(3.5)
    assert d.values["storage_time"] == 0.4 and d.values["end_to_end_time"] == 3.5
    assert d.values["queue_time"] == 0.2 and d.values["detection_lag"] == pytest.approx(0.1)
    # The sealed secrets go in the same compare-and-set: nothing needs them after a success.
    assert "input_sealed" in d.values and d.values["input_sealed"] is None


# --- shared rules -----------------------------------------------------------------------------------

def test_fail_clears_the_schedule_and_bounds_the_message() -> None:
    d = fail(job(), ErrorCode.SECRETS, "x" * 5000, at(1))
    assert d.expect == (JobStatus.QUEUED,) and len(d.values["error_message"]) == 4000
    assert d.values["next_check_at"] is None and d.values["create_in_flight_until"] is None


def test_retry_delay_is_jittered_within_bounds() -> None:
    delays = {retry_delay() for _ in range(200)}
    assert min(delays) >= 0.5 and max(delays) <= 4.0 and len(delays) > 100
