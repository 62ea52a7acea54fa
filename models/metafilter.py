"""`metadata.<key>=<value>` filters as one SQL condition that each database answers its own way.

PostgreSQL: `meta @> '{"k": "v", ...}'::jsonb`, one containment test that the GIN index ix_jobs_meta
(jsonb_path_ops) answers, however many keys are asked for and whichever keys they are (a side table
of (job, key, value) rows would need a join per key and its own writes on the batch insert path).
SQLite (the embedded default, small data): `json_extract(meta, '$."k"') = 'v'` per key, a scan.
The choice is made when the statement is compiled, so `Filters` and the list query stay
database-agnostic.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import String, and_, bindparam, cast, func
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


def _json_path(key: str) -> str:
    # A JSON path member in double quotes: json.dumps escapes quotes and backslashes in the key.
    return "$." + json.dumps(key)


@compiles(MetadataMatches, "postgresql")
def _postgresql(element: MetadataMatches, compiler: SQLCompiler, **kw: Any) -> str:
    doc = cast(bindparam(None, json.dumps(element.wanted), type_=String(), unique=True), JSONB())
    return compiler.process(element.column.op("@>")(doc), **kw)


@compiles(MetadataMatches)
def _default(element: MetadataMatches, compiler: SQLCompiler, **kw: Any) -> str:
    clauses = [func.json_extract(element.column, bindparam(None, _json_path(k), type_=String(), unique=True))
               == bindparam(None, v, type_=String(), unique=True) for k, v in element.wanted.items()]
    return compiler.process(and_(*clauses), **kw)
