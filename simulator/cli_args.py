"""argparse glue: one ``--kebab-case`` option per SimConfig field (``--token`` may repeat)."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from genqueue.simulator.config import LIMIT_PRESETS, SimConfig, limit_preset


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--host``, ``--port`` and every SimConfig knob (defaults: SimConfig's)."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8008)
    group = parser.add_argument_group("simulator knobs (see simulator.config.SimConfig)")
    group.add_argument("--preset", choices=sorted(LIMIT_PRESETS), default=None,
                       help="rate limits of an account kind (low_credit: 6 creates/min, burst 1); "
                            "the individual limit options override it")
    for spec in dataclasses.fields(SimConfig):
        kind = str(spec.type)
        if spec.name == "tokens":
            group.add_argument("--token", dest="tokens", action="append", default=None,
                               help="accepted API token (repeatable); --token '' accepts any token")
        elif kind.startswith("bool"):
            group.add_argument(_option(spec.name), dest=spec.name, action=argparse.BooleanOptionalAction,
                               default=None)
        elif kind.startswith("float"):
            group.add_argument(_option(spec.name), dest=spec.name, type=float, default=None)
        elif kind.startswith("int"):
            group.add_argument(_option(spec.name), dest=spec.name, type=int, default=None)
        else:
            group.add_argument(_option(spec.name), dest=spec.name, default=None)


def config_from_args(ns: argparse.Namespace) -> SimConfig:
    """SimConfig from parsed arguments; options not given keep SimConfig's defaults."""
    kwargs: dict[str, Any] = limit_preset(ns.preset) if getattr(ns, "preset", None) else {}
    for spec in dataclasses.fields(SimConfig):
        value = getattr(ns, spec.name, None)
        if value is None:
            continue
        if spec.name == "tokens":
            value = {t for t in value if t}
        kwargs[spec.name] = value
    return SimConfig(**kwargs)
