"""`genqueue stats`: the ops report (same figures as /v1/stats) as terminal tables or JSON, read from SQL."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from genqueue.cli.context import die, settings_or_die


def _s(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    table = Table(title=title, title_justify="left", header_style="bold", expand=False)
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*[str(c) for c in row])
    if not rows:
        table.add_row("(none)", *[""] * (len(columns) - 1))
    return table


def render(console: Console, r: dict[str, Any]) -> None:
    w = r["window"]
    console.print(f"[bold]genqueue stats[/]  since {w['since'] or 'the first job'}  until {w['until'] or 'now'}"
                  f"  (buckets {w['bucket_seconds']} s)")
    counts = r["status_counts"]
    console.print("statuses: " + "  ".join(f"{k}={v}" for k, v in counts.items()) + f"  total={r['total']}")
    q, fl, st = r["queue"], r["in_flight"], r["stuck"]
    console.print(f"queue: depth={q['depth']} oldest_age={_s(q['oldest_age_seconds'])}s   in flight: "
                  + " ".join(f"{k}={v}" for k, v in fl.items())
                  + f"   stuck: {st['count']} (> {st['stuck_after_seconds']:g}s overdue)")
    tp, cr = r["throughput"], r["creates"]
    console.print("finished: " + " ".join(f"{k}={v} ({tp['per_min'][k]:.2f}/min)" for k, v in tp["totals"].items()))
    console.print(f"creates: {cr['total']} (avg {cr['avg_per_min']:.2f}/min, peak {cr['peak_per_min']}/min,"
                  f" limit {cr['limit_per_min']}/min)")
    phases = r["latency"]["phases"]
    console.print(_table("latency by phase (seconds)", ["phase", "n", "p50", "p95", "p99"],
                         [[k, int(v.get("count") or 0), _s(v.get("p50")), _s(v.get("p95")), _s(v.get("p99"))]
                          for k, v in phases.items()]))
    console.print(_table("failures", ["error_code", "count", "latest message"],
                         [[f["error_code"], f["count"], (f["latest_message"] or "")[:80]] for f in r["failures"]]))
    console.print(_table("models", ["model", "jobs", "succeeded", "failed", "canceled", "p50 predict"],
                         [[m["model"], m["total"], m["by_status"]["succeeded"], m["by_status"]["failed"],
                           m["by_status"]["canceled"], _s(m["p50_predict_time"])] for m in r["models"]]))
    c = r["cost"]
    console.print(_table(f"cost at ${c['price_per_second']}/s: ${c['estimated_spend']:.4f} for"
                         f" {c['billed_seconds']:.1f} s billed", ["api key", "jobs", "billed s", "spend"],
                         [[k["name"] or k["api_key_id"] or "-", k["jobs"], f"{k['billed_seconds']:.1f}",
                           f"${k['spend']:.4f}"] for k in c["by_api_key"]]))
    console.print(f"canceled (billed): {c['canceled']['count']} jobs, ${c['canceled']['spend']:.4f}   "
                  f"aborted (not billed): {c['aborted']['count']} jobs")


def stats(
    window: Annotated[str, typer.Option(help="15m, 1h, 7d or all")] = "1h",
    model: Annotated[str | None, typer.Option(help='only this "owner/name"')] = None,
    api_key_id: Annotated[str | None, typer.Option(help="only jobs of this API key id")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the /v1/stats JSON document")] = False,
) -> None:
    """Ops figures: statuses, queue, in flight, throughput, latency by phase, failures, models, cost."""
    from genqueue.models.base import utcnow
    from genqueue.models.db import make_engine, make_session_factory
    from genqueue.models.jobs import STUCK_AFTER
    from genqueue.models.stats_report import filters_for, report

    s = settings_or_die()
    now = utcnow()
    try:
        f = filters_for(window=window, since=None, until=None, model=model, api_key_id=api_key_id, now=now)
    except ValueError as exc:
        die(str(exc))
    engine = make_engine(s.effective_database_url)
    try:
        with make_session_factory(engine)() as session:
            r = report(session, f, prices=s.prices(), create_rate_per_min=s.create_budget_per_min,
                       stuck_after=STUCK_AFTER.total_seconds(), now=now)
    except Exception as exc:
        die(f"cannot read the database: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    finally:
        engine.dispose()
    if as_json:
        typer.echo(json.dumps(r, indent=2))
    else:
        render(Console(), r)
