"""CPU and memory of process trees, read from /proc (psutil is not a dependency).

CPU of a tree = Σ over its live processes of utime+stime+cutime+cstime. `cutime/cstime` hold the CPU of
children a process has already reaped, so a prefork child that exited still counts once, and a live
child never counts twice (its parent's cutime only includes *reaped* children).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Stat:
    pid: int
    comm: str
    ppid: int
    cpu_ticks: int  # utime + stime + cutime + cstime
    rss_bytes: int


def read_stat(pid: int) -> Stat | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    head, tail = raw.rsplit(")", 1)
    comm = head.split("(", 1)[1]
    rest = tail.split()  # comm may contain spaces and parentheses
    # rest[0] is field 3 (state): field n is rest[n - 3]
    ppid = int(rest[1])
    utime, stime, cutime, cstime = (int(rest[i]) for i in (11, 12, 13, 14))
    rss_pages = int(rest[21])
    return Stat(pid, comm, ppid, utime + stime + cutime + cstime, rss_pages * PAGE)


def read_pss(pid: int) -> int:
    """Proportional set size in bytes (shared copy-on-write pages split among the sharers); 0 if unknown."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as fh:
            for line in fh:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def all_stats() -> dict[int, Stat]:
    out: dict[int, Stat] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = read_stat(int(name))
            if st is not None:
                out[st.pid] = st
    return out


def tree(roots: Iterable[int], stats: dict[int, Stat]) -> list[Stat]:
    children: dict[int, list[int]] = {}
    for st in stats.values():
        children.setdefault(st.ppid, []).append(st.pid)
    seen: list[Stat] = []
    todo = [r for r in roots if r in stats]
    visited: set[int] = set()
    while todo:
        pid = todo.pop()
        if pid in visited:
            continue
        visited.add(pid)
        seen.append(stats[pid])
        todo.extend(children.get(pid, ()))
    return seen


def tree_cpu_seconds(roots: Iterable[int], stats: dict[int, Stat] | None = None) -> float:
    stats = stats if stats is not None else all_stats()
    return sum(st.cpu_ticks for st in tree(roots, stats)) / CLK_TCK


def roots_by_comm(comm: str, stats: dict[int, Stat] | None = None) -> list[int]:
    """Pids named `comm` whose parent has another name (e.g. the postmaster of each PostgreSQL server)."""
    stats = stats if stats is not None else all_stats()
    return [st.pid for st in stats.values()
            if st.comm == comm and (st.ppid not in stats or stats[st.ppid].comm != comm)]


def self_cpu_seconds() -> float:
    """CPU (user+sys) of this process including reaped children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@dataclass
class GroupPeak:
    rss: int = 0
    pss: int = 0
    procs: int = 0


@dataclass
class Sampler:
    """Samples every `interval` s the summed RSS/PSS of each named group of process trees.

    `groups` maps a name to a callable returning the group's current root pids (restarted children
    get new pids). CPU is taken as snapshots: `cpu()` now, and deltas are computed by the caller.
    """

    groups: dict[str, Callable[[], list[int]]]
    interval: float = 0.5
    with_pss: bool = True
    peaks: dict[str, GroupPeak] = field(default_factory=dict)
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def cpu(self) -> dict[str, float]:
        stats = all_stats()
        return {name: tree_cpu_seconds(roots(), stats) for name, roots in self.groups.items()}

    def sample(self) -> None:
        stats = all_stats()
        for name, roots in self.groups.items():
            members = tree(roots(), stats)
            rss = sum(st.rss_bytes for st in members)
            pss = sum(read_pss(st.pid) for st in members) if self.with_pss else 0
            peak = self.peaks.setdefault(name, GroupPeak())
            peak.rss = max(peak.rss, rss)
            peak.pss = max(peak.pss, pss)
            peak.procs = max(peak.procs, len(members))
        self.samples += 1

    def _loop(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):  # a process vanishing mid-read must not end sampling
                self.sample()
            self._stop.wait(self.interval)

    def start(self) -> Sampler:
        self._thread = threading.Thread(target=self._loop, name="sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(5)


def wait_idle(roots: Callable[[], list[int]], *, min_procs: int, timeout: float = 30.0, quiet: float = 0.05,
              step: float = 0.5) -> bool:
    """Wait until the tree has at least `min_procs` processes and used < `quiet` CPU-s over `step` s."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        stats = all_stats()
        members = tree(roots(), stats)
        cpu = sum(st.cpu_ticks for st in members) / CLK_TCK
        if last is not None and len(members) >= min_procs and cpu - last < quiet:
            return True
        last = cpu
        time.sleep(step)
    return False


def mb(n: int) -> float:
    return round(n / 1024 / 1024, 1)
