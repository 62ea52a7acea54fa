"""`genqueue submit --file jobs.jsonl`: check the file line by line, submit it as one batch (streamed,
1,000 lines at a time, the same `BatchWriter` as `POST /v1/batches`), then show its progress.

The file is read twice and never held: a first pass checks every line without touching the database
and prints each bad one with its line number; by default nothing is submitted when a line is bad (fix
the file and run again, no job is doubled), with `--partial` the good lines are.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import typer

from genqueue.cli.context import die
from genqueue.intake.batches import CHUNK, LINE_OVERHEAD, MAX_LINES, BatchWriter, Item, options_problems, parse_line
from genqueue.intake.jsoncheck import DEFAULT_MAX_INPUT_BYTES
from genqueue.intake.ndjson import split_lines

BLOCK = 64 * 1024


def _lines(path: Path, max_input_bytes: int) -> Iterator[tuple[int, bytes | None]]:
    with path.open("rb") as f:
        yield from split_lines(iter(lambda: f.read(BLOCK), b""), max_input_bytes + LINE_OVERHEAD)


def check_file(path: Path, meta: Mapping[str, str], max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES) -> tuple[int, int]:
    """(lines, bad lines); each bad line is printed to stderr as `file:line: field: reason`."""
    if not path.is_file():
        die(f"no such file: {path}")
    lines = bad = 0
    for n, raw in _lines(path, max_input_bytes):
        lines += 1
        _, problems = parse_line(raw, meta, max_input_bytes)
        if lines > MAX_LINES:
            die(f"{path}: more than {MAX_LINES} jobs: split the file")
        if problems:
            bad += 1
            typer.echo(f"genqueue: error: {path}:{n}: " + "; ".join(f"{p.field}: {p.reason}" for p in problems),
                       err=True)
    if lines == 0:
        die(f"{path}: no jobs")
    return lines, bad


def submit_file(path: Path, *, partial: bool, wait: bool, timeout: float, callback_url: str | None,
                meta: dict[str, str]) -> None:
    from genqueue.bootstrap import Root
    from genqueue.cli.context import settings_or_die
    from genqueue.cli.preflight import secrets_or_die

    problems = options_problems(callback_url, meta or None)
    if problems:
        die("; ".join(f"--{p.field.replace('_', '-')}: {p.reason}" for p in problems))
    s = settings_or_die()
    _, bad = check_file(path, meta, s.max_input_bytes)
    if bad and not partial:
        die(f"{bad} bad line(s) in {path}; nothing was submitted (fix them, or --partial to submit the others)")
    root = Root(s)
    secrets_or_die(root)  # a job sealed with a key the workers lack would fail secrets_unavailable
    # Chunks are committed one by one even without --partial: the file was checked above, and one
    # transaction held over the whole file would block the workers' writes on SQLite.
    writer = BatchWriter(root.intake, api_key_id=None, callback_url=callback_url, metadata=meta)
    try:
        chunk: list[Item] = []
        for item in _lines(path, s.max_input_bytes):
            chunk.append(item)
            if len(chunk) >= CHUNK:
                writer.add(chunk)
                chunk = []
        writer.add(chunk)
        outcome = writer.finish()
    finally:
        writer.close()
    typer.echo(outcome.id)
    typer.echo(f"batch {outcome.id}: {outcome.accepted} jobs accepted, {outcome.rejected} lines refused", err=True)
    code = 1 if outcome.rejected else 0
    if wait:
        code = max(code, _wait(root.sessions, outcome.id, outcome.accepted, timeout))
    raise typer.Exit(code)


def _wait(sessions: Any, batch_id: str, total: int, timeout: float) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from genqueue.models import batches
    from genqueue.models.status import TERMINAL_NAMES

    deadline = time.monotonic() + timeout
    counts: dict[str, int] = {}
    # On stderr: stdout stays the batch id, then the summary.
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  transient=True, console=Console(stderr=True)) as progress:
        bar = progress.add_task(f"batch {batch_id[:8]}", total=total)
        while True:
            with sessions() as session:
                counts = batches.counts(session, [batch_id])[batch_id]
            done = sum(counts.get(t, 0) for t in TERMINAL_NAMES)
            progress.update(bar, completed=done, description=f"batch {batch_id[:8]} " + " ".join(
                f"{k}={v}" for k, v in sorted(counts.items())))
            if done >= total or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    typer.echo("statuses: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    return 0 if counts.get("succeeded", 0) == total else 1
