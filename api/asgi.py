"""`api.asgi:app` for `uvicorn --workers N`: the app is built from the environment on first access."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name != "app":
        raise AttributeError(name)
    from genqueue.api.app import create_app
    from genqueue.core.logs import setup_logging
    from genqueue.core.settings import load_settings

    settings = load_settings()
    setup_logging(settings.log_level)
    app = create_app(settings)
    globals()["app"] = app
    return app
