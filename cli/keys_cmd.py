"""`genqueue keys create|list|revoke|rotate-callback-secret`: API keys are shown once, stored hashed; each
key's callback signing secret is shown once, stored sealed with SECRETS_KEY."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from genqueue.cli.context import die, settings_or_die

app = typer.Typer(no_args_is_help=True, help="Manage API keys.")


def _sessions():  # type: ignore[no-untyped-def]
    from genqueue.models.db import make_engine, make_session_factory

    return make_session_factory(make_engine(settings_or_die().effective_database_url))


def _cipher():  # type: ignore[no-untyped-def]
    from genqueue.bootstrap import Root
    from genqueue.core.crypto import SecretsError

    try:
        return Root(settings_or_die()).cipher
    except SecretsError as exc:
        die(str(exc))


@contextmanager
def _db_errors() -> Iterator[None]:
    """Database trouble as one line: most often the schema was never created."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    try:
        yield
    except (OperationalError, ProgrammingError) as exc:
        first = str(exc.orig if hasattr(exc, "orig") else exc).splitlines()[0]
        die(f"database error ({first}); has `genqueue migrate` been run?")


Weight = Annotated[int | None, typer.Option(help="share of the create budget against other keys (1-1000)")]
MaxRunning = Annotated[int | None, typer.Option(help="most predictions running at once (0 = no limit)")]
MaxQueued = Annotated[int | None, typer.Option(help="most jobs queued; beyond it a submit is 429 (0 = no limit)")]
SpendLimit = Annotated[float | None, typer.Option(
    help="USD per --per window; once spent, submits are 429 and queued jobs wait until it resets (0 = no cap)")]
Per = Annotated[str | None, typer.Option(help="day | month: the spend cap's UTC calendar window (default day)")]
RetentionDays = Annotated[int | None, typer.Option(
    help="days this key's new jobs keep outputs and input (default GENQUEUE_RETENTION_DAYS; -1 = back to it)")]


def _check_spend(spend_limit: float | None, per: str | None, retention_days: int | None) -> None:
    if spend_limit is not None and not 0 <= spend_limit <= 1e9:
        die(f"--spend-limit must be 0 (no cap) to 1e9 USD (got {spend_limit})")
    if per is not None and per not in ("day", "month"):
        die(f"--per must be day or month (got {per!r})")
    if retention_days is not None and not -1 <= retention_days <= 36500:
        die(f"--retention-days must be 0 to 36500, or -1 for the default (got {retention_days})")


def _check_limits(weight: int | None, max_running: int | None, max_queued: int | None) -> None:
    if weight is not None and not 1 <= weight <= 1000:
        die(f"--weight must be 1 to 1000 (got {weight})")
    for flag, value in (("--max-running", max_running), ("--max-queued", max_queued)):
        if value is not None and value < 0:
            die(f"{flag} must be 0 (no limit) or more (got {value})")


@app.command()
def create(name: Annotated[str, typer.Option(help="1-100 characters")],
           role: Annotated[str, typer.Option(help="submit | ops | admin")] = "submit",
           weight: Weight = None, max_running: MaxRunning = None, max_queued: MaxQueued = None,
           spend_limit: SpendLimit = None, per: Per = None, retention_days: RetentionDays = None,
           callback_url: Annotated[str | None, typer.Option(
               help="default callback URL of this key's jobs (a job's own callback_url wins)")] = None) -> None:
    """Create a key (with its weight and limits) and its callback signing secret (whsec_..., printed
    once); the key itself is printed once, on the last line."""
    from genqueue.intake.callback_url import problem
    from genqueue.models.keys import Limits, Role, create_key, new_callback_secret

    if not 1 <= len(name.strip()) <= 100:
        die("--name must be 1 to 100 characters")
    try:
        r = Role(role)
    except ValueError:
        die(f"--role must be one of submit, ops, admin (got {role!r})")
    _check_limits(weight, max_running, max_queued)
    _check_spend(spend_limit, per, retention_days)
    limits = Limits(weight or 1, max_running or None, max_queued or None, spend_limit=spend_limit or None,
                    spend_period=per or "day", retention_days=None if retention_days in (None, -1) else retention_days)
    if callback_url is not None:
        reason = problem(callback_url, settings_or_die().callback_allow_private)
        if reason is not None:
            die(f"--callback-url {reason}")
    secret, sealed = new_callback_secret(_cipher())
    with _db_errors(), _sessions().begin() as session:
        key, plaintext = create_key(session, name.strip(), r, limits)
        key.callback_url, key.callback_secret_sealed = callback_url, sealed
        typer.echo(f"created key {key.prefix}… name={name} role={r.value} {_limits_text(key)} "
                   "(store it now; it is not shown again)")
    typer.echo(f"callback signing secret (verify callbacks with it; not shown again): {secret}")
    typer.echo(plaintext)

@app.command("rotate-callback-secret")
def rotate_callback_secret(key: Annotated[str, typer.Argument(help="key id or prefix")]) -> None:
    """Give a key a new callback signing secret, printed once; callbacks are signed with it from now on
    (attempts still pending included)."""
    from genqueue.models.keys import rotate_callback_secret as rotate

    cipher = _cipher()
    with _db_errors(), _sessions().begin() as session:
        secret = rotate(session, key, cipher)
        if secret is None:
            die(f"no active key {key!r}", 1)
    typer.echo(f"new callback signing secret for {key} (not shown again):")
    typer.echo(secret)


@app.command()
def update(key: Annotated[str, typer.Argument(help="key id or prefix")],
           weight: Weight = None, max_running: MaxRunning = None, max_queued: MaxQueued = None,
           spend_limit: SpendLimit = None, per: Per = None, retention_days: RetentionDays = None) -> None:
    """Change a key's weight, limits or spend cap; they apply within seconds, to jobs already queued too
    (a retention change applies to jobs submitted from then on)."""
    from genqueue.models.keys import UNSET, update_limits

    _check_limits(weight, max_running, max_queued)
    _check_spend(spend_limit, per, retention_days)
    if all(v is None for v in (weight, max_running, max_queued, spend_limit, per, retention_days)):
        die("nothing to change: give --weight, --max-running, --max-queued, --spend-limit, --per or --retention-days")
    with _db_errors(), _sessions().begin() as session:
        found = update_limits(session, key, weight=weight,
                              max_running=None if max_running is None else (max_running or UNSET),
                              max_queued=None if max_queued is None else (max_queued or UNSET),
                              spend_limit=None if spend_limit is None else (spend_limit or UNSET),
                              spend_period=per, retention_days=retention_days)
        if found is None:
            die(f"no active key {key!r}", 1)
        typer.echo(f"updated {found.prefix}… {_limits_text(found)}")


def _limits_text(key: object) -> str:
    def show(v: object) -> str:
        return "none" if v is None else str(v)

    limit = getattr(key, "spend_limit", None)
    spend = "none" if limit is None else f"{limit:g} USD/{getattr(key, 'spend_period', None) or 'day'}"
    return (f"weight={getattr(key, 'weight', 1)} max_running={show(getattr(key, 'max_running', None))} "
            f"max_queued={show(getattr(key, 'max_queued', None))} spend_limit={spend} "
            f"retention_days={show(getattr(key, 'retention_days', None))}")


@app.command("list")
def list_() -> None:
    """List keys (prefix, name, role, state)."""
    from genqueue.models.keys import list_keys

    with _db_errors(), _sessions()() as session:
        for k in list_keys(session):
            state = "revoked" if k.revoked_at else "active"
            typer.echo(f"{k.id}  {k.prefix}…  {k.role:<6}  {state:<7}  {k.name}  {_limits_text(k)}")


@app.command()
def revoke(key: Annotated[str, typer.Argument(help="key id or prefix")]) -> None:
    """Revoke a key; it stops working at once."""
    from genqueue.models.keys import revoke_key

    with _db_errors(), _sessions().begin() as session:
        if not revoke_key(session, key):
            die(f"no active key {key!r}", 1)
    typer.echo(f"revoked {key}")
