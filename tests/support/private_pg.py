"""A PostgreSQL server of a test's own (initdb in a temporary folder, its own port), that the test can
restart for real: every connection dropped, the server gone for a while, then back with its data. The
shared server other tests use is never touched.

PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user (the machine's
own installation has one); its folder is handed to that user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
from pathlib import Path

from genqueue.cli.stack import free_port


def pg_bindir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(candidates[-1]).parent if candidates else None


class PrivatePostgres:
    def __init__(self, directory: Path, port: int | None = None) -> None:
        bindir = pg_bindir()
        if bindir is None:
            raise RuntimeError("no PostgreSQL server binaries (pg_ctl) on this machine")
        self.bin = bindir
        self.dir = directory
        self.data = directory / "data"
        self.port = port or free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self.starts = 0

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = list(argv)
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=120)

    def init(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            pg = pwd.getpwnam("postgres")
            for path in (self.dir, *self.dir.parents):
                if path == Path("/"):
                    break
                # the postgres user must be able to reach its folder: traverse only, nothing readable
                if path.stat().st_uid == 0 and not path.stat().st_mode & 0o001:
                    path.chmod(path.stat().st_mode | 0o001)
            os.chown(self.dir, pg.pw_uid, pg.pw_gid)
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "--no-sync", "-E", "UTF8")

    def start(self) -> None:
        opts = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c fsync=off -c max_connections=200"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "server.log"),
                  "-o", opts, "-w", "-t", "60", "start")
        self.starts += 1

    def stop(self, mode: str = "fast") -> None:
        """`fast`: connections are cut and the server shuts down cleanly (what a restart does);
        `immediate`: as if it crashed (recovery at the next start)."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop",
                  check=False)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)
