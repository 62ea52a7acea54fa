"""The `genqueue` command: one entry point per process kind, plus submit, keys, demo and stats."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from genqueue.cli import jobs_cmd, keys_cmd, secrets_cmd, stats_cmd, submit_cmd
from genqueue.cli.context import die, settings_or_die

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="genqueue: durable Replicate generation jobs on Celery + Redis + SQL.")
app.add_typer(keys_cmd.app, name="keys")
app.add_typer(secrets_cmd.app, name="secrets")
app.add_typer(jobs_cmd.app, name="jobs")
app.command("submit")(submit_cmd.submit)
app.command("stats")(stats_cmd.stats)


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema (Alembic); on a new database, also the secrets key file."""
    from genqueue.bootstrap import Root
    from genqueue.core.crypto import SecretsError

    root = Root(settings_or_die())
    try:
        key_file = root.migrate()
    except SecretsError as exc:
        die(str(exc))
    except Exception as exc:
        die(f"migration failed: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    finally:
        root.close()
    typer.echo(f"database at head: {root.engine.url.render_as_string(hide_password=True)}")
    if key_file is not None:
        typer.echo(f"new secrets key written to {key_file}: back it up, or set SECRETS_KEY instead")


@app.command()
def api(host: str = "127.0.0.1", port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
        workers: Annotated[int, typer.Option(min=1, max=64)] = 1) -> None:
    """Serve the HTTP API (OpenAPI at /docs)."""
    import uvicorn

    from genqueue.bootstrap import Root
    from genqueue.cli.preflight import preflight
    from genqueue.core.logs import setup_logging

    s = settings_or_die()
    setup_logging(s.log_level)
    root = Root(s)
    preflight(root)
    if workers > 1:
        root.close()
        # Each process builds its own app from the environment (uvicorn imports the factory there).
        uvicorn.run("genqueue.bootstrap:asgi_app", factory=True, host=host, port=port, workers=workers,
                    log_level="warning", access_log=False)
        return
    uvicorn.run(root.api_app(), host=host, port=port, log_level="warning", access_log=False)


@app.command()
def worker(concurrency: Annotated[int, typer.Option(min=1, max=512)] = 4,
           pool: Annotated[str, typer.Option(help="prefork | threads | solo")] = "prefork",
           events: Annotated[bool, typer.Option(help="emit task events for Flower")] = False,
           queues: Annotated[str, typer.Option(
               help="all (follow-up work first, then new jobs) | follow (polls, pushes, stores: a worker "
                    "that finished predictions never wait behind creates) | new | callbacks (signed callback "
                    "POSTs only: slow receivers kept away from job steps)")] = "all") -> None:
    """Run a Celery worker (submit, poll, store, sweep tasks)."""
    from genqueue.bootstrap import Root
    from genqueue.cli.preflight import preflight
    from genqueue.core.logs import setup_logging
    from genqueue.worker.celery_app import make_worker_app
    from genqueue.worker.enqueue import ALL_QUEUES, CALLBACK_QUEUE, FOLLOW_QUEUE, QUEUE, STORE_QUEUE

    if pool not in ("prefork", "threads", "solo"):
        die("--pool must be prefork, threads or solo")
    chosen = {"all": ",".join(ALL_QUEUES), "follow": f"{FOLLOW_QUEUE},{STORE_QUEUE}", "new": QUEUE,
              "callbacks": CALLBACK_QUEUE}.get(queues)
    if chosen is None:
        die("--queues must be all, follow, new or callbacks")
    s = settings_or_die()
    try:
        s.token()
    except Exception as exc:
        die(str(exc))
    setup_logging(s.log_level)
    root = Root(s)
    preflight(root)
    root.close()  # each worker process builds its own (worker_process_init)
    celery = make_worker_app(s, pool=pool, concurrency=concurrency)
    argv = ["worker", "-Q", chosen, "-c", str(concurrency), "-P", pool, "--loglevel", s.log_level,
            "--without-gossip", "--without-mingle"]
    if events:
        argv.append("-E")
    celery.worker_main(argv)


@app.command()
def beat() -> None:
    """Run Celery beat (the sweeper's schedule). Run exactly one per deployment."""
    from genqueue.bootstrap import Root
    from genqueue.cli.preflight import preflight
    from genqueue.core.logs import setup_logging
    from genqueue.worker.celery_app import make_worker_app

    s = settings_or_die()
    setup_logging(s.log_level)
    root = Root(s)
    preflight(root, sql=False, secrets=False)  # beat only sends the sweeper's messages
    root.close()
    s.data_dir.mkdir(parents=True, exist_ok=True)
    celery = make_worker_app(s)
    celery.start(["beat", "--loglevel", s.log_level, "-s", str(s.data_dir / "celerybeat-schedule")])


@app.command()
def simulator(host: str = "127.0.0.1", port: Annotated[int, typer.Option(min=1, max=65535)] = 5001,
              predict_seconds: float = 1.8, start_delay: float = 0.5,
              set_: Annotated[list[str] | None,
                              typer.Option("--set", help="knob=value (JSON value), repeatable")] = None,
              preset: Annotated[str | None, typer.Option(
                  help="rate limits of an account kind: normal, or low_credit (6 creates/min, burst 1)")] = None,
              ) -> None:
    """Run the Replicate-compatible simulator (token r8_sim_fake_token)."""
    from genqueue.simulator.config import SimConfig
    from genqueue.simulator.server import serve

    try:
        cfg = SimConfig(predict_seconds=predict_seconds, start_delay=start_delay)
        changes: dict[str, object] = {} if preset is None else {"preset": preset}
        for item in set_ or []:
            key, sep, raw = item.partition("=")
            if not sep:
                die(f"--set expects knob=value, got {item!r}")
            try:
                changes[key.strip()] = json.loads(raw)
            except json.JSONDecodeError:
                changes[key.strip()] = raw
        cfg.update(changes)
    except ValueError as exc:
        die(f"simulator: {exc}")
    serve(host, port, cfg, log_level="warning")


@app.command()
def up(host: str = "127.0.0.1", port: int = 8000, concurrency: int = 4,
       simulator: Annotated[bool, typer.Option(help="also run the simulator and point at it")] = False) -> None:
    """API + worker + beat (+ simulator) as one supervised command for a single machine."""
    from genqueue.cli.stack import run_up

    run_up(settings_or_die(), host=host, port=port, concurrency=concurrency, with_simulator=simulator)


@app.command()
def demo(jobs: Annotated[int, typer.Option(min=1, max=10000)] = 20,
         concurrency: Annotated[int, typer.Option(min=1, max=64)] = 4,
         predict_seconds: float = 2.0) -> None:
    """Run the whole system on the embedded default with the simulator and 20 ocean prompts."""
    from genqueue.cli.demo import run_demo

    sys.exit(run_demo(jobs=jobs, concurrency=concurrency, predict_seconds=predict_seconds))


def main() -> None:
    app()
