"""A throwaway PostgreSQL server on loopback, for the tests and the load benchmarks (stdlib only).

    with ThrowawayPostgres() as pg:        # initdb, start, createdb in a temporary folder
        store = LabelStore(pg.url)
        pg.restart(down_s=2)                # the same port again, so pg.url stays valid
    # stopped and deleted here

Debian's initdb/pg_ctl (newest version first, else from PATH). initdb refuses to run as root, so
as root the server runs as `postgres` (Debian's package creates it) or `nobody`. It listens on
127.0.0.1 only, trusts local connections, and runs with fsync off: its data is thrown away.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

USER, DATABASE = "ranktune", "labels"


def pg_bin() -> Path | None:
    """Debian's PostgreSQL server binaries (initdb, pg_ctl), newest version first, else from PATH."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    if found:
        return found[0].parent
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    return Path(initdb).parent if initdb and pg_ctl else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _unprivileged_owner() -> pwd.struct_passwd | None:
    """The user to run the server as: None when not root (run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("running as root and no unprivileged user (postgres, nobody) to run PostgreSQL as")


class ThrowawayPostgres:
    """A fresh PostgreSQL server in a temporary folder: `.url`, `.stop()`, `.start()`, `.restart()`,
    `.close()` (stop and delete). Created running; a context manager closes it on exit.

    Raises RuntimeError when there is no server to start (no binaries, initdb or start failed).
    """

    def __init__(self, max_connections: int = 200):
        self.bin_dir = pg_bin()
        if self.bin_dir is None:
            raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql")
        owner = _unprivileged_owner()
        self._demote = None
        if owner is not None:
            def demote():
                os.setgid(owner.pw_gid)
                os.setuid(owner.pw_uid)

            self._demote = demote
        self.root = Path(tempfile.mkdtemp(prefix="ranktune-pg-"))
        if owner is not None:
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        self.data, self.log, self.port = self.root / "data", self.root / "log", free_port()
        # Kept for every later start: a restart must come back on the same port with the same settings.
        self._options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off "
                         f"-c max_connections={max_connections}")
        self.url = f"postgresql+psycopg2://{USER}@127.0.0.1:{self.port}/{DATABASE}"
        self.running = False
        try:
            self._run("initdb", "-D", str(self.data), "-U", USER, "--auth=trust", "-E", "UTF8", "--no-sync")
            self.start()
            self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, DATABASE)
        except BaseException:
            self.close()
            raise

    def _run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        try:
            return subprocess.run([str(self.bin_dir / cmd[0]), *cmd[1:]], preexec_fn=self._demote, cwd=self.root,
                                  check=check, capture_output=True, text=True, timeout=120)
        except subprocess.CalledProcessError as err:
            raise RuntimeError(f"PostgreSQL {cmd[0]} failed: {(err.stderr or err.stdout or '').strip()[:300]}") \
                from None

    def start(self) -> None:
        """Start the server (waits until it accepts connections); nothing if it runs already."""
        if self.running:
            return
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start", "-o", self._options)
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """Stop the server. "fast": open sessions are ended (clients get 57P01, admin shutdown) and it
        shuts down cleanly; "immediate": it quits at once, like a crash, and recovers at the next start."""
        if not self.running:
            return
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")
        self.running = False

    def restart(self, down_s: float = 0.0, mode: str = "fast") -> None:
        """Stop, stay down `down_s` seconds, start again on the same port (`url` stays valid)."""
        self.stop(mode)
        time.sleep(down_s)
        self.start()

    def close(self) -> None:
        """Stop the server (immediately: its data is not kept) and delete its folder."""
        if self.running:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop", check=False)
            self.running = False
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "ThrowawayPostgres":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextlib.contextmanager
def throwaway_postgres(max_connections: int = 200) -> Iterator[str]:
    """The URL of a fresh ThrowawayPostgres on 127.0.0.1, stopped and deleted afterwards."""
    with ThrowawayPostgres(max_connections) as pg:
        yield pg.url
