"""`metadata.<key>=<value>` filters as one SQL condition that each database answers its own way.

PostgreSQL: `meta @> '{"k": "v", ...}'::jsonb`, one containment test that the GIN index ix_jobs_meta
(jsonb_path_ops) answers, however many keys are asked for and whichever keys they are (a side table
of (job, key, value) rows would need a join per key and its own writes on the batch insert path).
SQLite (the embedded default, small data): an EXISTS over `json_each(meta)` per key, a scan (json_each
rather than a JSON path, so any key, quotes and dots included, is matched as given).
The choice is made when the statement is compiled, so `Filters` and the list query stay
database-agnostic.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import String, bindparam, cast
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import Boolean


class MetadataMatches(ColumnElement[bool]):
    """True for rows whose `column` holds every key of `wanted` with exactly that value."""

    inherit_cache = False  # the wanted pairs are part of the statement's shape on SQLite
    type = Boolean()

    def __init__(self, column: ColumnElement[Any] | Any, wanted: Mapping[str, str]) -> None:
        self.column = column
        self.wanted = dict(wanted)


@compiles(MetadataMatches, "postgresql")
def _postgresql(element: MetadataMatches, compiler: SQLCompiler, **kw: Any) -> str:
    doc = cast(bindparam(None, json.dumps(element.wanted), type_=String(), unique=True), JSONB())
    return compiler.process(element.column.op("@>")(doc), **kw)


@compiles(MetadataMatches)
def _default(element: MetadataMatches, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    tests = []
    for key, value in element.wanted.items():
        k = compiler.process(bindparam(None, key, type_=String(), unique=True), **kw)
        v = compiler.process(bindparam(None, value, type_=String(), unique=True), **kw)
        # Only compiled SQL is put together here: the key and value are bound parameters.
        tests.append(f"EXISTS (SELECT 1 FROM json_each({column}) AS je "  # noqa: S608
                     f"WHERE je.key = {k} AND je.type = 'text' AND je.value = {v})")
    return "(" + " AND ".join(tests) + ")"
