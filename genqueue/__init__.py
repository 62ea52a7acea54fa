"""genqueue: durable, observable generation jobs on Replicate (Celery + Redis + SQL + object storage).

One import name for the whole product. The folders of the design card (`api/`, `worker/`, `models/`,
...) stay at the top of the repository; `genqueue/` links to each of them, so the installed wheel holds
`genqueue.api`, `genqueue.worker`, ... and nothing generic lands in a user's site-packages, while
every tool (pytest, mypy, ruff, an editable install) sees ordinary files with no import hook.
"""

__version__ = "0.1.0"
