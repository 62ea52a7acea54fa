"""What CLI commands share: settings loaded once, with one clear line (not a traceback) on error."""

from __future__ import annotations

import sys
from typing import NoReturn

from genqueue.core.settings import ConfigError, Settings, load_settings


def die(message: str, code: int = 2) -> NoReturn:
    print(f"genqueue: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def settings_or_die(**overrides: object) -> Settings:
    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        die(str(exc))
