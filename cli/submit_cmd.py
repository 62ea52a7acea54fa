"""`genqueue submit`: enqueue jobs from flags or a JSONL file through the same intake as the API."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from genqueue.cli.context import die, settings_or_die
from genqueue.models.status import TERMINAL_NAMES as TERMINAL


def _parse_inputs(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in pairs:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            die(f"--input expects key=value, got {item!r}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def submit(
    version: Annotated[str | None, typer.Option(help='"owner/name:<64 hex>" or "<64 hex>"')] = None,
    model: Annotated[str | None, typer.Option(help="official model owner/name")] = None,
    deployment: Annotated[str | None, typer.Option(help="deployment owner/name")] = None,
    input_: Annotated[
        list[str] | None, typer.Option("--input", "-i", help="key=value (JSON value), repeatable")
    ] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="JSONL: one job request per line, "
                                                                    "submitted as one batch")] = None,
    wait: Annotated[bool | None, typer.Option(help="wait until every job is terminal (default: with --file)")] = None,
    timeout: Annotated[float, typer.Option(min=1)] = 3600.0,
    partial: Annotated[bool, typer.Option(help="--file: submit the good lines even if some are bad")] = False,
    callback_url: Annotated[str | None, typer.Option(help="--file: called when every job is terminal")] = None,
    metadata: Annotated[list[str] | None, typer.Option("--metadata", "-m", help="key=value tag, repeatable")] = None,
) -> None:
    """Submit a job (prints its id), or a JSONL file as one batch (prints the batch id, shows its progress;
    bad lines are printed with their numbers and make the exit code non-zero)."""
    from genqueue.bootstrap import Root
    from genqueue.cli.preflight import secrets_or_die
    from genqueue.intake import IntakeError, JobRequest

    if file is not None and (version or model or deployment or input_):
        die("give either --file or --version/--model/--deployment with --input, not both")
    tags = _parse_tags(metadata or [])
    if file is not None:
        from genqueue.cli.batch_cmd import submit_file

        submit_file(file, partial=partial, wait=wait is not False, timeout=timeout, callback_url=callback_url,
                    meta=tags)
        return
    raw = [
        (
            "",
            {k: v for k, v in {"version": version, "model": model, "deployment": deployment}.items() if v}
            | {"input": _parse_inputs(input_ or [])} | ({"metadata": tags} if tags else {}),
        )
    ]
    requests = []
    for where, row in raw:
        try:
            requests.append(JobRequest.model_validate(row))
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or "version"
            die(f"{where + ': ' if where else ''}{field}: {err['msg'].removeprefix('Value error, ')}")
    s = settings_or_die()
    root = Root(s)
    secrets_or_die(root)  # a job sealed with a key the workers lack would fail secrets_unavailable
    sessions, intake = root.sessions, root.intake
    try:
        jobs, _ = intake.submit(requests, batch=len(requests) > 1)
    except IntakeError as exc:
        die(
            "; ".join(
                _where(raw, f.field) + f"{f.field.split('.', 2)[-1] if f.field.startswith('jobs.') else f.field}"
                f": {f.reason}"
                for f in exc.fields
            )
            or exc.message
        )
    for job in jobs:
        typer.echo(job.id)
    if wait:
        _wait(sessions, [j.id for j in jobs], timeout)


def _parse_tags(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in pairs:
        key, sep, value = item.partition("=")
        if not sep or not key:
            die(f"--metadata expects key=value, got {item!r}")
        out[key] = value
    return out


def _where(raw: list[tuple[str, dict[str, Any]]], field: str) -> str:
    """Map intake's batch path `jobs.<i>.…` back to the file line it came from."""
    parts = field.split(".")
    if len(parts) > 2 and parts[0] == "jobs" and parts[1].isdigit() and int(parts[1]) < len(raw):
        where = raw[int(parts[1])][0]
        return f"{where}: " if where else ""
    return f"{raw[0][0]}: " if len(raw) == 1 and raw[0][0] else ""


def _wait(sessions: Any, ids: list[str], timeout: float) -> None:
    from rich.console import Console
    from rich.progress import Progress

    from genqueue.models.stats import Filters, status_counts

    deadline = time.monotonic() + timeout
    # Progress on stderr: stdout stays one job id per line, then the summary.
    with Progress(transient=True, console=Console(stderr=True)) as progress:
        bar = progress.add_task("waiting", total=len(ids))
        while True:
            with sessions() as session:
                counts = status_counts(session, Filters(job_ids=ids))
            done = sum(counts.get(t, 0) for t in TERMINAL)
            progress.update(bar, completed=done)
            if done == len(ids) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    typer.echo("statuses: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    if counts.get("succeeded", 0) != len(ids):
        raise typer.Exit(1)
