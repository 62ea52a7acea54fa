"""`genqueue secrets gen-key|rotate`: Fernet keys for sealing job secrets, and re-encryption."""

from __future__ import annotations

import typer

from genqueue.cli.context import die, settings_or_die

app = typer.Typer(no_args_is_help=True, help="Manage the key that seals secret input fields.")


@app.command("gen-key")
def gen_key() -> None:
    """Print a new Fernet key (put it first in SECRETS_KEY to start encrypting with it)."""
    from cryptography.fernet import Fernet

    typer.echo(Fernet.generate_key().decode())


@app.command()
def rotate(batch: int = 500) -> None:
    """Re-encrypt every job's sealed secrets, and every key's callback signing secret, with the first key
    of SECRETS_KEY."""
    from sqlalchemy import select

    from genqueue.bootstrap import Root
    from genqueue.core.crypto import SecretsError
    from genqueue.core.crypto import rotate as rotate_token
    from genqueue.models.tables import ApiKey, Job

    root = Root(settings_or_die())
    try:
        cipher = root.cipher
    except SecretsError as exc:
        die(str(exc))
    sessions = root.sessions
    done, last = 0, ""
    while True:
        with sessions.begin() as session:
            rows = list(session.scalars(select(Job).where(Job.input_sealed.is_not(None), Job.id > last)
                                        .order_by(Job.id).limit(batch)))
            if not rows:
                break
            for job in rows:
                try:
                    job.input_sealed = rotate_token(cipher, job.input_sealed)
                except Exception:
                    die(f"job {job.id}: sealed with a key not in SECRETS_KEY; nothing after it was changed")
            done += len(rows)
            last = rows[-1].id
    with sessions.begin() as session:  # a few keys: one transaction
        keys = list(session.scalars(select(ApiKey).where(ApiKey.callback_secret_sealed.is_not(None))))
        for key in keys:
            try:
                key.callback_secret_sealed = rotate_token(cipher, key.callback_secret_sealed)
            except Exception:
                die(f"key {key.id}: callback secret sealed with a key not in SECRETS_KEY; no key was changed")
    typer.echo(f"re-encrypted {done} jobs and {len(keys)} callback signing secrets with the current key")
