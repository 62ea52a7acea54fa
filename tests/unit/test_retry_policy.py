"""The retry policy's decisions (worker/lifecycle/retry.py) with plain values: which failures start a new
attempt, which never do, the backoff, and what the new attempt resets."""

from __future__ import annotations

from datetime import timedelta

import pytest

from genqueue.models.attempts import METRICS, attempt_deadline, new_attempt_values
from genqueue.models.status import ErrorCode, JobStatus
from genqueue.worker.lifecycle import create, follow
from genqueue.worker.lifecycle.decision import MAX_DELIVERIES, Decision, Deliveries, Step, fail
from genqueue.worker.lifecycle.retry import BACKOFF_MAX, backoff, retry_instead, retryable_codes
from tests.unit.test_lifecycle import POLLING, T0, at, job, prediction, running


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    assert [backoff(n) for n in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 16.0]  # rand 0.5: no jitter
    assert backoff(1, rand=0.0) == 1.6 and backoff(1, rand=0.999) == pytest.approx(2.4, abs=0.01)
    assert backoff(20, rand=0.5) == BACKOFF_MAX


def test_default_retry_on_is_model_errors_only() -> None:
    assert retryable_codes(None) == {ErrorCode.PREDICTION_FAILED}
    assert retryable_codes(["timeout", "aborted"]) == {ErrorCode.DEADLINE_EXCEEDED, ErrorCode.PREDICTION_ABORTED}


def test_a_failed_prediction_with_attempts_left_is_queued_again_with_its_record() -> None:
    j = running(attempt=1, retries_left=2, retry_on=["model_error"], deadline_seconds=600.0)
    d = follow.observed(j, prediction("failed", error="boom"), at(5), POLLING, None)
    assert d.expect == (JobStatus.RUNNING,) and d.to is JobStatus.QUEUED
    assert d.values["attempt"] == 2 and d.values["retries_left"] == 1
    # The attempt's columns are cleared, so the next attempt needs its own claim and create.
    for col in ("prediction_id", "prediction_get_url", "submit_started_at", "create_in_flight_until", "error_code"):
        assert d.values[col] is None
    assert d.values["attempts"] == 0 and d.deliveries is Deliveries.RESET
    assert d.then.step is Step.SUBMIT and d.then.countdown > 0  # the backoff: a delayed requeue
    assert d.values["next_check_at"] == at(5) + timedelta(seconds=d.then.countdown)
    assert d.values["deadline_at"] == d.values["next_check_at"] + timedelta(seconds=600)
    assert d.archive is not None
    assert d.archive["attempt"] == 1 and d.archive["status"] == "failed" and d.archive["prediction_id"] == "p1"
    assert d.archive["prediction_status"] == "failed" and d.archive["error_code"] == "prediction_failed"
    assert d.archive["error_message"] == "boom" and d.archive["metrics"]["predict_time"] == 2.5
    assert set(d.archive["metrics"]) == set(METRICS)


def test_the_last_attempt_fails_the_job() -> None:
    j = running(attempt=3, retries_left=0, retry_on=["model_error"])
    d = follow.observed(j, prediction("failed", error="boom"), at(5), POLLING, None)
    assert d.to is JobStatus.FAILED and d.archive is None


def test_default_policy_never_reruns_a_failed_prediction() -> None:
    d = follow.observed(running(), prediction("failed", error="boom"), at(5), POLLING, None)
    assert d.to is JobStatus.FAILED


def test_an_outcome_not_named_in_on_is_final() -> None:
    j = running(retries_left=2, retry_on=["timeout"])
    assert follow.observed(j, prediction("failed"), at(5), POLLING, None).to is JobStatus.FAILED
    aborted = follow.observed(j.replace(deadline_at=at(3)), prediction("aborted"), at(5), POLLING, None)
    assert aborted.to is JobStatus.QUEUED  # aborted at the deadline: deadline_exceeded, named by "timeout"


def test_a_give_up_while_the_prediction_may_run_is_never_retried() -> None:
    # A poisoned poll fails the job while its prediction is still processing: a new attempt now could
    # run beside it, so the policy never applies (and too_many_deliveries is not retryable anyway).
    j = running(retries_left=2, retry_on=list(("model_error", "timeout")), deliveries=MAX_DELIVERIES)
    d = follow.before_look(j, at(5))
    assert isinstance(d, Decision) and d.to is JobStatus.FAILED
    forced = fail(j, ErrorCode.PREDICTION_FAILED, "pretend", at(5))  # even with a retryable code
    assert retry_instead(j, forced, at(5)).to is JobStatus.FAILED


def test_a_refused_create_made_nothing_and_may_be_retried() -> None:
    j = job(JobStatus.SUBMITTING, submit_started_at=at(0), create_in_flight_until=at(47), retries_left=1,
            retry_on=["replicate_error"])
    d = create.create_refused(j, 400, "bad request", at(1))
    assert d.to is JobStatus.QUEUED and d.expect == (JobStatus.SUBMITTING,)
    assert create.create_refused(j, 422, "invalid", at(1)).to is JobStatus.FAILED  # input_rejected: not named


def test_a_storing_failure_is_never_retried() -> None:
    j = job(JobStatus.STORING, prediction_id="p1", prediction_status="succeeded", retries_left=2,
            retry_on=["output_expired"])
    d = fail(j, ErrorCode.OUTPUT_EXPIRED, "gone", at(5))
    assert retry_instead(j, d, at(5)) is d  # storing -> queued is not a transition


def test_deadline_reached_while_queued_is_final_even_with_timeout() -> None:
    # No attempt ran; a fresh deadline would only defeat the caller's own.
    j = job(deadline_at=at(10), retries_left=1, retry_on=["timeout"], deadline_seconds=10.0)
    d = create.before_create(j, at(11), dispatched=True)
    assert isinstance(d, Decision) and d.to is JobStatus.FAILED


def test_new_attempt_values_and_the_deadline_of_old_rows() -> None:
    v = new_attempt_values(T0, 30.0)
    assert v["deadline_at"] == T0 + timedelta(seconds=30) and v["next_check_at"] > T0
    assert new_attempt_values(T0, None)["deadline_at"] is None
    assert attempt_deadline(None, at(600), T0) == 600.0 and attempt_deadline(45.0, at(600), T0) == 45.0
