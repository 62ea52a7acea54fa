"""`genqueue demo`: the whole system on the embedded default (SQLite file, local folder, simulator).

Starts the simulator, a Redis if none answers, a worker and beat as separate processes, submits jobs
through the same intake the API uses, shows progress, and prints the summary from models.stats.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from genqueue.cli.context import settings_or_die
from genqueue.cli.stack import Stack, free_port, wait_http
from genqueue.models.status import TERMINAL_NAMES as TERMINAL

JIGSAWSTACK_VERSION = "jigsawstack/image-generation:43d5bce2e1c97fa1e7d8996187a85cd5c882787989091af3b135c7a16ca23b79"
PROMPTS = [
    "A calm ocean at sunrise, soft pastel light", "Giant waves crashing on black volcanic rocks",
    "A lighthouse over a stormy ocean at night", "Bioluminescent plankton glowing in ocean waves",
    "A humpback whale breaching in the open ocean", "Coral reef teeming with tropical fish",
    "An ocean horizon under a starry sky", "A sailboat crossing a turquoise ocean",
    "Sea turtles gliding through clear ocean water", "Ocean fog rolling over cliffs at dawn",
    "A deep ocean trench lit by a submarine", "Surfers riding a glassy ocean wave",
    "Icebergs floating in a cold blue ocean", "A tropical ocean lagoon from above",
    "Ocean waves under a purple sunset", "Kelp forest swaying in ocean currents",
    "A storm front moving over the ocean", "Dolphins leaping across ocean swells",
    "Moonlight reflecting on a quiet ocean", "An old shipwreck on the ocean floor",
]


def demo_env(data_dir: str, sim_port: int, redis_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        GENQUEUE_DATA_DIR=data_dir,
        REDIS_URL=redis_url,
        REPLICATE_BASE_URL=f"http://127.0.0.1:{sim_port}/v1",
        REPLICATE_API_TOKEN="r8_sim_fake_token",
        OUTPUT_ALLOWED_HOSTS=f"127.0.0.1:{sim_port}",
        OUTPUT_ALLOW_PRIVATE="true",
        GENQUEUE_LOG_LEVEL=env.get("GENQUEUE_LOG_LEVEL", "WARNING"),
    )
    return env


def run_demo(*, jobs: int, concurrency: int, predict_seconds: float) -> int:
    from genqueue.bootstrap import Root
    from genqueue.cli.embedded_redis import ensure_redis
    from genqueue.intake import JobRequest

    console = Console()
    base = settings_or_die()
    data_dir = str(base.data_dir.resolve())
    redis_proc = ensure_redis(base.redis_url, base.data_dir, allowed=not base.redis_url_given)
    # SIGTERM stops the demo like Ctrl-C does, so the finally blocks below stop every child.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        sim_port = free_port()
        env = demo_env(data_dir, sim_port, base.redis_url)
        os.environ.update(env)
        settings = settings_or_die()
        root = Root(settings)
        try:
            root.migrate()
            sessions = root.sessions
            log_dir = settings.data_dir / "logs"
            console.print(f"[bold]genqueue demo[/]: data in {data_dir}, logs in {log_dir}")
            with Stack(env, log_dir) as stack:
                stack.add("simulator", "simulator", "--port", str(sim_port), "--predict-seconds",
                          str(predict_seconds))
                if not wait_http(f"http://127.0.0.1:{sim_port}/_sim/stats", 30):
                    console.print("[red]simulator did not start[/]")
                    return 1
                stack.add("worker", "worker", "--concurrency", str(concurrency))
                stack.add("beat", "beat")
                # Submit once a worker answers, so queue_time measures the queue, not the worker's boot.
                _wait_for_worker(root.celery, console)
                requests = [
                    JobRequest(version=JIGSAWSTACK_VERSION, input={
                        "prompt": PROMPTS[i % len(PROMPTS)], "aspect_ratio": "16:9", "output_format": "png",
                        "steps": 4, "api_key": "sk_demo_fake_not_a_real_key"})
                    for i in range(jobs)
                ]
                created, _ = root.intake.submit(requests, batch=True)
                ids = [j.id for j in created]
                ok = _watch(console, sessions, ids, timeout=120 + jobs * predict_seconds / concurrency * 2)
                _summary(console, sessions, ids, settings.effective_storage_url)
                root.celery.close()
        finally:
            root.close()
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        return 130
    finally:
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(10)
    return 0 if ok else 1


def _wait_for_worker(celery: Any, console: Console, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    with console.status("starting the worker"):
        while time.monotonic() < deadline:
            if celery.control.ping(timeout=1.0):
                return
    console.print("[yellow]no worker answered yet; submitting anyway[/]")


def _watch(console: Console, sessions: object, ids: list[str], timeout: float) -> bool:
    from genqueue.models.stats import Filters, status_counts

    deadline = time.monotonic() + timeout
    with Progress(TextColumn("jobs"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                  TimeElapsedColumn(), console=console) as progress:
        bar = progress.add_task("", total=len(ids))
        while time.monotonic() < deadline:
            with sessions() as session:  # type: ignore[operator]
                counts = status_counts(session, Filters(job_ids=ids))
            done = sum(counts.get(s, 0) for s in TERMINAL)
            progress.update(bar, completed=done, description=" ".join(f"{k}={v}" for k, v in sorted(counts.items())))
            if done == len(ids):
                return counts.get("succeeded", 0) == len(ids)
            time.sleep(0.5)
    console.print("[red]timed out waiting for jobs[/]")
    return False


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _summary(console: Console, sessions: object, ids: list[str], storage_url: str) -> None:
    from genqueue.models.stats import Filters, summary

    with sessions() as session:  # type: ignore[operator]
        s = summary(session, Filters(job_ids=ids))
    console.print("statuses: " + ", ".join(f"{k}={v}" for k, v in sorted(s["status_counts"].items())))
    table = Table(title="timings (seconds)")
    for col in ("phase", "n", "p50", "p95"):
        table.add_column(col, justify="right" if col != "phase" else "left")
    for name, stats in s["timings"].items():
        table.add_row(name, str(int(stats.get("count") or 0)), _fmt(stats.get("p50")), _fmt(stats.get("p95")))
    console.print(table)
    console.print(f"images: {storage_url.removeprefix('file://')}/jobs/<job id>/0.png")
