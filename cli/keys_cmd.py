"""`genqueue keys create|list|revoke`: API keys are shown once, stored hashed."""

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


@contextmanager
def _db_errors() -> Iterator[None]:
    """Database trouble as one line: most often the schema was never created."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    try:
        yield
    except (OperationalError, ProgrammingError) as exc:
        first = str(exc.orig if hasattr(exc, "orig") else exc).splitlines()[0]
        die(f"database error ({first}); has `genqueue migrate` been run?")


@app.command()
def create(name: Annotated[str, typer.Option(help="1-100 characters")],
           role: Annotated[str, typer.Option(help="submit | ops | admin")] = "submit") -> None:
    """Create a key; the key itself is printed once, on the last line."""
    from genqueue.models.keys import Role, create_key

    if not 1 <= len(name.strip()) <= 100:
        die("--name must be 1 to 100 characters")
    try:
        r = Role(role)
    except ValueError:
        die(f"--role must be one of submit, ops, admin (got {role!r})")
    with _db_errors(), _sessions().begin() as session:
        key, plaintext = create_key(session, name.strip(), r)
        typer.echo(f"created key {key.prefix}… name={name} role={r.value} (store it now; it is not shown again)")
    typer.echo(plaintext)


@app.command("list")
def list_() -> None:
    """List keys (prefix, name, role, state)."""
    from genqueue.models.keys import list_keys

    with _db_errors(), _sessions()() as session:
        for k in list_keys(session):
            state = "revoked" if k.revoked_at else "active"
            typer.echo(f"{k.id}  {k.prefix}…  {k.role:<6}  {state:<7}  {k.name}")


@app.command()
def revoke(key: Annotated[str, typer.Argument(help="key id or prefix")]) -> None:
    """Revoke a key; it stops working at once."""
    from genqueue.models.keys import revoke_key

    with _db_errors(), _sessions().begin() as session:
        if not revoke_key(session, key):
            die(f"no active key {key!r}", 1)
    typer.echo(f"revoked {key}")
