"""`GET /metrics`: Prometheus text format, computed at scrape time from the shared sources of truth.

Job counts, queue depth, in-flight and phase quantiles come from SQL; Replicate request counts and
rate-limiter waits from the Redis hashes every worker increments (worker/metrics.py). Nothing is kept in
this process, so the figures are right however many worker processes, hosts or API replicas there are.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from typing import Annotated

import redis
from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from genqueue.api.auth import Principal, require
from genqueue.api.deps import session_factory
from genqueue.api.errors import ErrorResponse
from genqueue.core.pricing import Period, Price, PriceTable, spend_window
from genqueue.models import callbacks, stats
from genqueue.models.base import utcnow
from genqueue.models.keys import Role
from genqueue.models.stats import QUANTILES, STATUSES, TIMINGS, Filters
from genqueue.models.stats_report import cost, retention_status
from genqueue.models.status import TERMINAL
from genqueue.models.tables import Job
from genqueue.worker.metrics import LIMITER_KEY, REPLICATE_KEY, read_counters

log = logging.getLogger(__name__)
router = APIRouter(tags=["ops"])
PHASE_WINDOW = timedelta(hours=1)  # genqueue_phase_seconds covers jobs created in the last hour


class GenqueueCollector(Collector):
    def __init__(self, sessions: sessionmaker[Session], client: redis.Redis, prices: PriceTable | None = None) -> None:
        self._sessions = sessions
        self._redis = client
        self._prices = prices or PriceTable(Price())

    def collect(self) -> Iterator[Metric]:
        yield from self._sql()
        yield from self._redis_counters()

    def _sql(self) -> Iterator[Metric]:
        now = utcnow()
        with self._sessions() as session:
            rows = session.execute(select(Job.status, Job.error_code, func.count())
                                   .group_by(Job.status, Job.error_code)).all()
            in_flight = stats.in_flight(session, Filters())
            q = stats.queue(session, Filters(), now)
            phases = stats.timing_percentiles(session, Filters(since=now - PHASE_WINDOW))
            deliveries = callbacks.counts(session)
            # Today's spend (UTC day, jobs created today: ix_jobs_created), and retention's backlog.
            day = spend_window(Period.DAY, now)[0]
            spend = cost(session, Filters(since=day), self._prices)
            kept = retention_status(session, Filters(since=day), now)
        finished = CounterMetricFamily("genqueue_jobs_finished", "Jobs that reached a terminal status",
                                       labels=["status", "error_code"])
        jobs = GaugeMetricFamily("genqueue_jobs", "Jobs by current status", labels=["status"])
        by_status = dict.fromkeys(STATUSES, 0)
        terminal = {s.value for s in TERMINAL}
        for status, code, n in rows:
            by_status[status] = by_status.get(status, 0) + int(n)
            if status in terminal:
                finished.add_metric([status, code or ""], float(n))
        for status, n in by_status.items():
            jobs.add_metric([status], float(n))
        yield finished
        yield jobs
        yield GaugeMetricFamily("genqueue_queue_depth", "Jobs queued, waiting for a worker", value=q["depth"])
        yield GaugeMetricFamily("genqueue_queue_oldest_age_seconds", "Age of the oldest queued job",
                                value=q["oldest_age_seconds"] or 0.0)
        flight = GaugeMetricFamily("genqueue_in_flight", "Jobs being worked on, by phase", labels=["phase"])
        for phase in ("submitting", "starting", "processing", "storing"):
            flight.add_metric([phase], float(in_flight[phase]))
        yield flight
        pct = GaugeMetricFamily("genqueue_phase_seconds", "Phase duration quantiles, jobs created in the last hour",
                                labels=["phase", "quantile"])
        for name in TIMINGS:
            for qv in QUANTILES:
                value = phases[name].get(f"p{round(qv * 100)}")
                if value is not None:
                    pct.add_metric([name, str(qv)], value)
        yield pct
        cb = GaugeMetricFamily("genqueue_callback_deliveries", "Callback deliveries by state (failed: gave up, "
                               "callback_failed)", labels=["state"])
        for state in ("pending", "delivered", "failed"):
            cb.add_metric([state], float(deliveries[state]))
        yield cb
        by_model = GaugeMetricFamily("genqueue_cost_usd_today", "USD of jobs created today (UTC) by the price "
                                     "table, by model", labels=["model"])
        for m in spend["by_model"]:
            by_model.add_metric([m["model"]], m["spend"])
        yield by_model
        by_key = GaugeMetricFamily("genqueue_cost_usd_today_by_key", "USD of jobs created today (UTC), by API key",
                                   labels=["api_key"])
        for k in spend["by_api_key"]:
            by_key.add_metric([k["name"] or k["api_key_id"] or "-"], k["spend"])
        yield by_key
        yield GaugeMetricFamily("genqueue_retention_overdue", "Finished jobs past their retention whose outputs "
                                "are not deleted yet (the sweeper's backlog)", value=float(kept["overdue"]))
        yield CounterMetricFamily("genqueue_callback_attempts_failed",
                                  "Callback attempts answered with no 2xx (or not at all)",
                                  value=float(deliveries["failed_attempts"]))

    def _redis_counters(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("genqueue_metrics_redis_up", "1 when the Redis counters could be read")
        try:
            replicate = read_counters(self._redis, REPLICATE_KEY)
            waits = read_counters(self._redis, LIMITER_KEY)
        except redis.RedisError as exc:
            log.warning("metrics: redis counters unavailable (%s)", type(exc).__name__)
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        requests = CounterMetricFamily("genqueue_replicate_requests", "Replicate API answers by endpoint and code",
                                       labels=["endpoint", "code"])
        for field, n in sorted(replicate.items()):
            endpoint, _, code = field.rpartition("|")
            requests.add_metric([endpoint, code], n)
        yield requests
        count = CounterMetricFamily("genqueue_ratelimit_waits", "Times a worker waited for the rate limiter",
                                    labels=["kind"])
        seconds = CounterMetricFamily("genqueue_ratelimit_wait_seconds", "Seconds workers waited for the limiter",
                                      labels=["kind"])
        for field, v in sorted(waits.items()):
            kind, _, what = field.rpartition("|")
            if what == "count":
                count.add_metric([kind], v)
            elif what == "seconds":
                seconds.add_metric([kind], v)
        yield count
        yield seconds


@router.get("/metrics", summary="Prometheus metrics (ops or admin key)", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}},
                       **{c: {"model": ErrorResponse} for c in (401, 403, 429)}})
def metrics(request: Request, _: Annotated[Principal, Depends(require(Role.OPS))]) -> Response:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GenqueueCollector(session_factory(request), request.app.state.redis,
                                        request.app.state.settings.prices()))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
