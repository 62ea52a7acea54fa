"""Replicate's webhook: a finished prediction pushed to us, so no worker has to GET it.

The route only authenticates (signature) and hands over: it enqueues an `observe` step carrying the
prediction's status, output references, error and metrics — never its `input` or `logs`, which may
hold a caller's secret — and answers 200 at once (Replicate wants a quick 2xx and retries otherwise).
The worker applies it with the same compare-and-set as a poll, so duplicates and late deliveries are
harmless. Deliveries for an unknown job or an earlier prediction of the job are ignored there.
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any, cast

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from genqueue.api.deps import get_enqueuer
from genqueue.api.errors import ApiError
from genqueue.api.webhook_auth import (
    RETRY_AFTER_FAILURE,
    SecretPending,
    WebhookRejected,
    WebhookSecret,
    check_headers,
    verify,
)
from genqueue.intake.errors import FieldError
from genqueue.models.status import PREDICTION_TERMINAL

log = logging.getLogger(__name__)
router = APIRouter(tags=["webhooks"])

# The prediction fields a worker needs to finish the job; everything else is dropped here.
KEEP = ("id", "status", "output", "error", "metrics", "created_at", "started_at", "completed_at", "urls",
        "data_removed", "version", "model")
# Outputs are URLs (small) or data: URIs (can be large). A message bigger than this is not put on the
# broker; the worker is asked to GET the prediction instead.
MAX_MESSAGE_BYTES = 256 * 1024


class WebhookAck(BaseModel):
    accepted: bool
    """False when the event needed nothing (not a terminal status)."""


def _secret(request: Request) -> WebhookSecret:
    return cast(WebhookSecret, request.app.state.webhook_secret)  # built by `create_app`


def _authenticate(request: Request, body: bytes) -> None:
    provider = _secret(request)
    try:
        check_headers(request.headers)  # an unsigned request never makes us fetch a secret
        try:
            verify(provider.get(), request.headers, body)
        except WebhookRejected:
            if not provider.refresh_after_mismatch():
                raise
            verify(provider.get(), request.headers, body)
    except WebhookRejected as exc:
        log.warning("webhook rejected: %s", exc)
        raise ApiError(401, "unauthorized", f"webhook signature check failed: {exc}") from None
    except SecretPending as exc:  # debug only: every queued delivery would log it otherwise
        log.debug("webhook answered 503: %s", exc)
        raise ApiError(503, "unavailable", "webhook signing secret is unavailable; retry later",
                       headers={"Retry-After": str(int(RETRY_AFTER_FAILURE))}) from None
    except Exception as exc:  # the secret could not be obtained (no token, Replicate unreachable)
        log.error("webhook secret unavailable: %s", type(exc).__name__)
        raise ApiError(503, "unavailable", "webhook signing secret is unavailable; retry later") from None


def _prediction(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        raise ApiError(422, "validation_error", "body is not JSON",
                       [FieldError("body", "must be a prediction object")]) from None
    if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not isinstance(data.get("status"), str):
        raise ApiError(422, "validation_error", "body is not a prediction",
                       [FieldError("body", "must be a prediction with string id and status")])
    return {k: data[k] for k in KEEP if k in data}


def _accept(request: Request, job: str, body: bytes) -> WebhookAck:
    _authenticate(request, body)
    prediction = _prediction(body)
    if prediction["status"] not in PREDICTION_TERMINAL:
        return WebhookAck(accepted=False)
    enqueuer = get_enqueuer(request)
    if len(json.dumps(prediction)) > MAX_MESSAGE_BYTES:
        enqueuer.poll(job)
    else:
        enqueuer.observe(job, prediction)
    log.info("job=%s webhook prediction=%s status=%s", job, prediction["id"], prediction["status"])
    return WebhookAck(accepted=True)


@router.post(
    "/v1/replicate/webhook",
    summary="Replicate's prediction webhook (authenticated by its signature, not an API key)",
    responses={401: {"description": "Signature missing, wrong or too old"},
               503: {"description": "The signing secret could not be obtained"}},
)
async def replicate_webhook(
    request: Request,
    job: Annotated[str, Query(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9]+$",
                              description="The job id genqueue put in the webhook URL")],
) -> WebhookAck:
    body = await request.body()
    # Verification, the secret fetch and the broker publish block: keep them off the event loop.
    return await run_in_threadpool(_accept, request, job, body)
