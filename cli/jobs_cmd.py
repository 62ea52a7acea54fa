"""`genqueue jobs retry|cancel`: the bulk actions of `POST /v1/jobs/bulk` from a terminal, on every
key's jobs (the CLI runs with the server's own database access, like `genqueue keys`): count, ask,
then run a chunk of 1,000 at a time with a progress bar."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated

import typer

from genqueue.cli.context import die, settings_or_die

app = typer.Typer(no_args_is_help=True, help="Retry or cancel many jobs at once.")

_SINCE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(value: str) -> timedelta:
    """`90s`, `30m`, `1h`, `2d` -> a duration; ValueError naming the accepted forms otherwise."""
    m = _SINCE.match(value.strip())
    if not m or float(m.group(1)) <= 0:
        raise ValueError("must be a positive number followed by s, m, h or d (e.g. 1h)")
    return timedelta(seconds=float(m.group(1)) * _UNIT[m.group(2)])


def parse_metadata(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{item!r} must be key=value")
        out[key] = value
    return out


Status = Annotated[str | None, typer.Option(help="Only jobs in this status (retry: failed|canceled; "
                                                   "cancel: queued|submitting|running)")]
Since = Annotated[str | None, typer.Option(help="Only jobs created this recently: 90s, 30m, 1h, 2d")]
Model = Annotated[str | None, typer.Option(help='Only this "owner/name"')]
Priority = Annotated[int | None, typer.Option(min=0, max=9, help="Only this priority")]
BatchOpt = Annotated[str | None, typer.Option("--batch", help="Only jobs of this batch")]
ErrorCodeOpt = Annotated[str | None, typer.Option("--error-code", help="Only jobs that failed with this code")]
Meta = Annotated[list[str] | None, typer.Option("--metadata", help="key=value tag (repeatable)")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Only count the matching jobs")]


def _run(action: str, status: str | None, since: str | None, model: str | None, priority: int | None,
         batch: str | None, error_code: str | None, metadata: list[str] | None, yes: bool, dry_run: bool) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from genqueue.bootstrap import Root
    from genqueue.intake import bulk
    from genqueue.models.base import utcnow

    allowed = bulk.RETRYABLE if action == "retry" else bulk.CANCELABLE
    if status is not None and status not in allowed:
        die(f"--status: a {action} applies to {' | '.join(allowed)} jobs only")
    try:
        after = utcnow() - parse_since(since) if since else None
        tags = parse_metadata(metadata or [])
    except ValueError as exc:
        die(f"--since/--metadata: {exc}")
    flt = bulk.JobFilter(api_key_id=None, all_keys=True, status=status, model=model, priority=priority,
                         metadata=tags or None, created_after=after, batch=batch, error_code=error_code)
    root = Root(settings_or_die())
    try:
        with root.sessions() as session:
            matched = bulk.count(session, action, flt)  # type: ignore[arg-type]
        typer.echo(f"{matched} jobs match")
        if dry_run or matched == 0:
            return
        if not yes and not typer.confirm(f"{action.capitalize()} {matched} jobs?", default=False):
            raise typer.Exit(1)
        shown = {k: v for k, v in {"status": status, "model": model, "priority": priority, "batch": batch,
                                   "error_code": error_code, "metadata": tags or None,
                                   "created_after": _iso(after)}.items() if v is not None}
        with root.sessions.begin() as session:
            bulk_id = bulk.start(session, action, flt, shown, matched)  # type: ignore[arg-type]
        sinks = bulk.sinks(root.redis, root.intake.enqueue, root.enqueuer.cancel)
        with Progress(TextColumn(f"{action} {bulk_id}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as bar:
            task = bar.add_task(action, total=matched)
            done = bulk.run(root.sessions, sinks, action, flt, bulk_id=bulk_id,  # type: ignore[arg-type]
                            on_chunk=lambda p: bar.update(task, completed=min(p.matched, matched)))
        typer.echo(f"{done.done} jobs {'queued again' if action == 'retry' else 'canceled or cancel requested'}, "
                   f"{done.skipped} had moved on, {done.skipped_secrets_deleted} skipped (secrets deleted)")
    finally:
        root.close()


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


@app.command()
def retry(status: Status = None, since: Since = None, model: Model = None, priority: Priority = None,
          batch: BatchOpt = None, error_code: ErrorCodeOpt = None, metadata: Meta = None, yes: Yes = False,
          dry_run: DryRun = False) -> None:
    """Queue a new attempt of every failed or canceled job that matches (jobs whose secrets were deleted
    after the replay window are skipped and counted)."""
    _run("retry", status, since, model, priority, batch, error_code, metadata, yes, dry_run)


@app.command()
def cancel(status: Status = None, since: Since = None, model: Model = None, priority: Priority = None,
           batch: BatchOpt = None, error_code: ErrorCodeOpt = None, metadata: Meta = None, yes: Yes = False,
           dry_run: DryRun = False) -> None:
    """Cancel every queued, submitting or running job that matches (running ones on Replicate too)."""
    _run("cancel", status, since, model, priority, batch, error_code, metadata, yes, dry_run)
