"""Connecting to the label store: SQLite (WAL) for one machine, PostgreSQL for a team.

SQLite: every write transaction starts with BEGIN IMMEDIATE, which takes the database's write
lock up front. With SQLite's default (deferred) BEGIN two transactions that both read and then
write can deadlock, and one fails with "database is locked" after the busy timeout. Reads use a
second engine with plain BEGIN, so reviewers' page loads never wait for a writer (WAL).

PostgreSQL: READ COMMITTED; the claim locks the item row it fills (SELECT ... FOR UPDATE), and
uniqueness constraints settle the remaining races, which callers retry.

An outage (PostgreSQL down or restarting, the connection lost) raises StoreUnavailable from every
read and write, never the driver's error, so callers can say "try again" instead of failing.
Connections are checked before use (pool_pre_ping) and a lost one makes SQLAlchemy recycle the
whole pool, so once the server is back the next call works, with no reconnect step. `retry` runs a
transaction again after a connection lost before COMMIT (nothing of it was stored), never after
one lost during COMMIT: that may have been stored, so it raises StoreUnavailable(maybe_saved=True).
SQLite has no outage: "database is locked" after the busy timeout stays what it was.
"""

from __future__ import annotations

import contextlib
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, DisconnectionError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from labeling_ui.schema import BACKFILL, DROP_INDEXES, SCHEMA_VERSION, UPGRADABLE_FROM, UPGRADE_COLUMNS, Base, Meta
from labeling_ui.tasks import StoreUnavailable
from ranktune.errors import InputError

T = TypeVar("T")
BUSY_TIMEOUT_S = 30
# Without it libpq waits for the kernel's TCP timeout (about two minutes) on a server that drops
# packets instead of refusing: a click would hang that long before it could say "try again".
CONNECT_TIMEOUT_S = 10
# SQLSTATEs of a server going away: class 08 (connection exception), admin shutdown, crash
# shutdown, cannot connect now (starting up, in recovery).
OUTAGE_CODES = ("57P01", "57P02", "57P03")
# What libpq and psycopg say, without a SQLSTATE, when it cannot reach the server or lost it.
OUTAGE_TEXT = ("connection refused", "could not connect", "server closed the connection", "terminating connection",
               "the database system is", "no connection to the server", "connection already closed",
               "connection not open", "could not receive data", "could not send data", "ssl syscall error",
               "ssl connection has been closed", "connection reset", "connection timed out", "timeout expired",
               "network is unreachable", "no route to host", "could not translate host name", "too many clients",
               "remaining connection slots")


def utcnow() -> datetime:
    """Naive UTC, the form every timestamp in the store takes."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def sqlite_url(path: str | Path) -> str:
    return f"sqlite:///{Path(path)}"


def _sqlite_engine(url, write: bool) -> Engine:
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # let SQLAlchemy's "begin" event below emit BEGIN itself
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")  # durable across app crashes; WAL keeps it consistent
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


class Database:
    """Two session factories over one database: `write()` and `read()` transactions."""

    def __init__(self, url: str):
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise InputError(f"not a database URL: {url!r} (expected sqlite:///file.db or postgresql://...)",
                             field="db") from None
        self.url = parsed
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        if self.is_sqlite:
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            self.write_engine = _sqlite_engine(parsed, write=True)
            self.read_engine = _sqlite_engine(parsed, write=False)
        else:
            connect_args = {}
            if parsed.get_driver_name() in ("psycopg2", "psycopg") and "connect_timeout" not in parsed.query:
                connect_args["connect_timeout"] = CONNECT_TIMEOUT_S
            try:
                self.write_engine = create_engine(parsed, pool_pre_ping=True, pool_size=10, max_overflow=20,
                                                  connect_args=connect_args)
            except ModuleNotFoundError as err:
                raise InputError(f"the database driver is not installed ({err.name}); for PostgreSQL "
                                 "install psycopg2-binary", field="db") from None
            self.read_engine = self.write_engine
        # Reentrant: a write inside a write of the same thread must not wait for itself.
        self._write_lock = threading.RLock() if self.is_sqlite else contextlib.nullcontext()
        self._writer = sessionmaker(self.write_engine, expire_on_commit=False)
        self._reader = sessionmaker(self.read_engine, expire_on_commit=False)
        self._create_schema()

    def _create_schema(self) -> None:
        try:
            Base.metadata.create_all(self.write_engine)
            with self.write() as s:
                row = s.get(Meta, "schema_version")
                if row is None:
                    s.add(Meta(key="schema_version", value=str(SCHEMA_VERSION)))
                elif row.value in UPGRADABLE_FROM:
                    self._add_columns(s)
                    row.value = str(SCHEMA_VERSION)
                elif row.value != str(SCHEMA_VERSION):
                    raise InputError(f"label store has schema version {row.value}; this code reads "
                                     f"version {SCHEMA_VERSION}", self.display())
        except (OperationalError, StoreUnavailable) as err:
            cause = err.__cause__ if isinstance(err, StoreUnavailable) else err
            orig = getattr(cause, "orig", None)
            first = str(orig).splitlines()[0] if orig else str(cause)
            raise InputError(f"cannot open the label store ({first})", self.display()) from None

    def _add_columns(self, s: Session) -> None:
        """Columns added since an older schema version (UPGRADE_COLUMNS), in the upgrade's transaction."""
        from sqlalchemy import text

        have = {t: {c["name"] for c in inspect(s.connection()).get_columns(t)} for t in UPGRADE_COLUMNS}
        for table, names in UPGRADE_COLUMNS.items():
            for name in names:
                if name in have[table]:
                    continue
                col = Base.metadata.tables[table].c[name]
                kind = col.type.compile(dialect=s.bind.dialect)
                default = f" DEFAULT '{col.server_default.arg}' NOT NULL" if col.server_default is not None else ""
                s.execute(text(f'ALTER TABLE {table} ADD COLUMN {name} {kind}{default}'))
                if (table, name) in BACKFILL:
                    s.execute(text(BACKFILL[table, name]))
        for name in DROP_INDEXES:
            s.execute(text(f"DROP INDEX IF EXISTS {name}"))
        for table in UPGRADE_COLUMNS:  # create_all makes no index on a table that exists already
            for index in Base.metadata.tables[table].indexes:
                index.create(s.connection(), checkfirst=True)

    def display(self) -> str:
        """The URL without its password, for messages and logs."""
        return self.url.render_as_string(hide_password=True)

    @contextlib.contextmanager
    def write(self) -> Iterator[Session]:
        """One write transaction: committed on success, rolled back on any exception.

        StoreUnavailable in an outage; with `maybe_saved` when the connection went during COMMIT.

        SQLite: this process's writers also queue on a lock before BEGIN IMMEDIATE. Without it they
        all wait in SQLite's busy handler, which polls with sleeps of up to 100 ms: under load the
        write lock sat idle between those polls (saturation and the latency tail both suffered)."""
        phase = _Phase()
        with self._write_lock, self._outage(phase), self._writer() as session:
            session.begin()
            yield session
            session.flush()  # the last statements run here, before COMMIT: a failure now stored nothing
            phase.committing = True
            session.commit()

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        """One read transaction; StoreUnavailable in an outage."""
        with self._outage(), self._reader() as session, session.begin():
            yield session

    @contextlib.contextmanager
    def _outage(self, phase: "_Phase | None" = None) -> Iterator[None]:
        """The driver's errors of an outage as StoreUnavailable; every other error as it was."""
        try:
            yield
        except (DBAPIError, DisconnectionError) as err:
            if self.is_sqlite or not is_outage(err):
                raise
            raise StoreUnavailable(maybe_saved=phase is not None and phase.committing) from err

    def retry(self, fn: Callable[[Session], T], attempts: int = 5) -> T:
        """Run `fn` in a write transaction, again if a concurrent writer won a race.

        A unique constraint (two tabs claiming one item) or a PostgreSQL deadlock/serialization
        failure rolls the whole transaction back, so running it again from the start is safe.
        So does a connection lost before COMMIT, which is run again once, on a new connection (the
        server may have restarted since this one was checked; a failure to connect is not tried
        again: the server is down). Lost during COMMIT, the write may have landed, and running `fn`
        again could do it twice: StoreUnavailable(maybe_saved=True).
        """
        reconnected = False
        for attempt in range(attempts):
            try:
                with self.write() as session:
                    return fn(session)
            except StoreUnavailable as err:
                lost = getattr(err.__cause__, "connection_invalidated", False)  # not: could not connect
                if err.maybe_saved or not lost or reconnected or attempt == attempts - 1:
                    raise
                reconnected = True
                time.sleep(0.05)
            except (IntegrityError, OperationalError) as err:
                if attempt == attempts - 1 or not _retryable(err):
                    raise
                time.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    def tables(self) -> list[str]:
        with self._outage():
            return inspect(self.read_engine).get_table_names()

    def scalar(self, stmt):
        with self.read() as s:
            return s.scalar(stmt)

    def dispose(self) -> None:
        self.write_engine.dispose()
        self.read_engine.dispose()


class _Phase:
    committing = False


def is_outage(err: BaseException) -> bool:
    """Whether a database error means the server cannot be reached (or was lost), rather than that
    it refused the statement. For PostgreSQL's drivers; SQLite's errors are never outages."""
    if isinstance(err, DisconnectionError):
        return True
    if not isinstance(err, DBAPIError):
        return False
    if err.connection_invalidated:  # SQLAlchemy's dialect saw a disconnect (and recycled the pool)
        return True
    orig = err.orig
    code = getattr(orig, "pgcode", None) or getattr(orig, "sqlstate", None)  # psycopg2, psycopg 3
    if code:
        return code.startswith("08") or code in OUTAGE_CODES
    # Failures to connect carry no SQLSTATE (libpq reports them before there is a session).
    text = str(orig if orig is not None else err).lower()
    return any(t in text for t in OUTAGE_TEXT)


def _retryable(err: Exception) -> bool:
    if isinstance(err, IntegrityError):
        return True
    code = getattr(getattr(err, "orig", None), "pgcode", None)
    text = str(getattr(err, "orig", err)).lower()
    return code in ("40001", "40P01") or "database is locked" in text

