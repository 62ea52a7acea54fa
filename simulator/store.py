"""In-memory prediction records. No timers: each record stores its planned timeline (integer
microseconds) and its state is computed from the clock whenever it is read, so holding tens of
thousands of predictions in flight costs one small object each."""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from genqueue.simulator.catalog import VersionInfo
from genqueue.simulator.config import SimConfig
from genqueue.simulator.png import image_size, make_png, make_svg

ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
TERMINAL = frozenset({"succeeded", "failed", "canceled", "aborted"})
US = 1_000_000


def fingerprint(value: Any) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class State:
    status: str
    started_us: int | None
    completed_us: int | None
    data_removed: bool


@dataclass(slots=True)
class Record:
    id: str
    seq: int
    model: str
    version: str
    input: dict[str, Any]
    input_fingerprint: str
    created_us: int
    start_us: int
    end_us: int
    outcome: str
    error: str | None
    deadline_us: int | None
    retention_us: int
    output_mode: str
    n_outputs: int
    ext: str
    size: tuple[int, int]
    canceled_us: int | None = None
    gets: int = 0
    file_gets: dict[int, int] = field(default_factory=dict)
    shas: list[str] | None = None

    def state(self, now_us: int) -> State:
        end, status = self.end_us, self.outcome
        if self.deadline_us is not None and self.deadline_us < end:
            end = self.deadline_us
            status = "aborted" if self.deadline_us < self.start_us else "canceled"
        if self.canceled_us is not None and self.canceled_us < end:
            end, status = self.canceled_us, "canceled"
        if now_us >= end:
            started = self.start_us if self.start_us <= end and status != "aborted" else None
            return State(status, started, end, now_us >= end + self.retention_us)
        if now_us >= self.start_us:
            return State("processing", self.start_us, None, False)
        return State("starting", None, None, False)

    def file_bytes(self, index: int) -> bytes:
        key = f"{self.id}/out-{index}"
        return make_svg(key, *self.size) if self.ext == "svg" else make_png(key, *self.size)

    def file_shas(self) -> list[str]:
        if self.shas is None:
            self.shas = [hashlib.sha256(self.file_bytes(i)).hexdigest() for i in range(self.n_outputs)]
        return self.shas


class Store:
    def __init__(self, config: SimConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.reset()

    def reset(self) -> None:
        seed = self.config.seed
        self.rng = random.Random(seed) if seed is not None else random.Random()
        self.records: dict[str, Record] = {}
        self.order: list[Record] = []
        self.duplicates: dict[tuple[str, str], int] = {}

    def now_us(self) -> int:
        return int(self.clock() * US)

    def _new_id(self) -> str:
        while True:
            pid = "".join(self.rng.choice(ID_ALPHABET) for _ in range(26))
            if pid not in self.records:
                return pid

    def create(self, version: VersionInfo, inp: dict[str, Any], cancel_after: float | None) -> Record:
        cfg, now = self.config, self.now_us()
        start = now + int((cfg.start_delay + self.rng.uniform(0, cfg.jitter)) * US)
        run = cfg.predict_seconds + self.rng.uniform(0, cfg.jitter)
        outcome, error = "succeeded", None
        if self.rng.random() < cfg.fail_rate:
            outcome, error = "failed", "Simulated model failure (fail_rate)"
            run = run / 2
        if run > cfg.max_run_seconds:
            run, outcome = cfg.max_run_seconds, "failed"
            error = f"Prediction timed out after {cfg.max_run_seconds:g} seconds"
        fp = fingerprint(inp)
        key = (version.id, fp)
        self.duplicates[key] = self.duplicates.get(key, 0) + 1
        ext = "svg" if inp.get("output_format") == "svg" else "png"
        size = image_size(_str(inp.get("aspect_ratio")), _int(inp.get("width")), _int(inp.get("height")))
        rec = Record(
            id=self._new_id(), seq=len(self.order), model=version.model, version=version.id,
            input=inp, input_fingerprint=fp, created_us=now, start_us=start,
            end_us=start + int(run * US), outcome=outcome, error=error,
            deadline_us=None if cancel_after is None else now + int(cancel_after * US),
            retention_us=int(cfg.retention_seconds * US), output_mode=cfg.output_mode,
            n_outputs=2 if cfg.output_mode == "list" else 1, ext=ext, size=size,
        )
        self.records[rec.id] = rec
        self.order.append(rec)
        return rec

    def get(self, pid: str) -> Record | None:
        return self.records.get(pid)

    def cancel(self, rec: Record) -> None:
        now = self.now_us()
        if rec.state(now).status not in TERMINAL:
            rec.canceled_us = now

    def duplicate_count(self, rec: Record) -> int:
        return self.duplicates.get((rec.version, rec.input_fingerprint), 0)

    def page(
        self, cursor: int | None, direction: str, after_us: int | None, before_us: int | None, size: int = 100
    ) -> tuple[list[Record], int | None, int | None]:
        """Newest first. ``direction`` "next": records with seq < cursor; "previous": seq > cursor.
        Returns (records, next_cursor, previous_cursor) where cursors are seq boundaries."""

        def matches(rec: Record) -> bool:
            return (after_us is None or rec.created_us > after_us) and (
                before_us is None or rec.created_us < before_us
            )

        if direction == "previous" and cursor is not None:
            older_first = [r for r in self.order[cursor + 1 :] if matches(r)][:size]
            items = list(reversed(older_first))
        else:
            top = len(self.order) if cursor is None else cursor
            items = []
            for rec in _reverse(self.order, top):
                if matches(rec):
                    items.append(rec)
                    if len(items) == size:
                        break
        if not items:
            return [], None, None
        has_older = any(matches(r) for r in _reverse(self.order, items[-1].seq))
        has_newer = any(matches(r) for r in self.order[items[0].seq + 1 :])
        return items, items[-1].seq if has_older else None, items[0].seq if has_newer else None


def _reverse(order: list[Record], top: int) -> Iterator[Record]:
    for i in range(top - 1, -1, -1):
        yield order[i]


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
