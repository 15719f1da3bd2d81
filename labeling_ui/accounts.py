"""Reviewer accounts: scrypt password hashes, rate-limited logins, login sessions.

A password is never stored, logged or compared in clear: the store keeps
`scrypt$N$r$p$salt$hash` with a per-user random salt, and a session cookie's value is kept
only as its SHA-256. Failed logins are counted over a sliding window per (name, client address)
and per client address; past either limit, that client's attempts are refused without checking
the password. Not per name alone: then anyone who knows a reviewer's name could keep them locked
out from anywhere. Guessing a password from many addresses is left to scrypt's cost (~50 ms a try).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from sqlalchemy import delete, func, select

from labeling_ui.db import Database, utcnow
from labeling_ui.schema import LoginAttempt, Reviewer, Session
from ranktune.errors import InputError

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1  # ~16 MiB and ~50 ms per check: slow to brute-force
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MIN_PASSWORD_CHARS = 8


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(password.encode("utf-8"), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(digest) // 2)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got.hex(), digest)


# Checked when the name is unknown, so a login takes as long whether or not the name exists.
_DUMMY_HASH = hash_password(secrets.token_hex(8))


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ReviewerInfo:
    id: int
    name: str
    is_admin: bool


class LoginRefused(Exception):
    """Wrong name or password (one message for both), or too many failures lately."""

    def __init__(self, message: str, rate_limited: bool = False):
        super().__init__(message)
        self.rate_limited = rate_limited


class Accounts:
    def __init__(self, db: Database, clock: Callable[[], datetime] = utcnow, max_failures: int = 5,
                 max_failures_per_client: int = 20, window_s: float = 900, session_s: float = 12 * 3600):
        self.db, self.clock = db, clock
        self.max_failures, self.max_failures_per_client = max_failures, max_failures_per_client
        self.window, self.session_ttl = timedelta(seconds=window_s), timedelta(seconds=session_s)
        # Counts the changes made through this object that can end sessions (disable, new password):
        # the server's session cache drops its entries when it moves, so they end at once in this
        # process. A change from another process (the CLI) reaches the cache within its few seconds.
        self.changes = 0

    def add(self, name: str, password: str, admin: bool = False, update: bool = False) -> ReviewerInfo:
        """Create a reviewer, or with `update` set a new password / admin flag for an existing one."""
        if not NAME_RE.match(name or ""):
            raise InputError("reviewer names are 1-64 letters, digits or _ . @ - (starting with a letter or digit)",
                             field="name")
        if len(password) < MIN_PASSWORD_CHARS:
            raise InputError(f"password too short: use at least {MIN_PASSWORD_CHARS} characters", field="password")
        hashed = hash_password(password)
        with self.db.write() as s:
            row = s.scalar(select(Reviewer).where(Reviewer.name == name))
            if row is not None and not update:
                raise InputError(f"reviewer '{name}' already exists (add --update to change the password)",
                                 field="name")
            if row is None:
                row = Reviewer(name=name, created_at=self.clock())
                s.add(row)
            else:  # a new password ends the reviewer's open sessions
                s.execute(delete(Session).where(Session.reviewer_id == row.id))
                self.changes += 1
            # `disabled` is left as it is: re-enabling is its own, audited action (enable-reviewer).
            row.password_hash, row.is_admin = hashed, admin
            s.flush()
            return ReviewerInfo(row.id, row.name, row.is_admin)

    def get(self, name: str) -> ReviewerInfo | None:
        with self.db.read() as s:
            row = s.scalar(select(Reviewer).where(Reviewer.name == name, Reviewer.disabled.is_(False)))
            return ReviewerInfo(row.id, row.name, row.is_admin) if row else None

    def all(self) -> list[ReviewerInfo]:
        with self.db.read() as s:
            return [ReviewerInfo(r.id, r.name, r.is_admin) for r in s.scalars(select(Reviewer).order_by(Reviewer.name))]

    def login(self, name: str, password: str, client: str) -> ReviewerInfo:
        """The reviewer, or LoginRefused. Every checked attempt is recorded."""
        name, client = (name or "")[:64], (client or "?")[:64]
        now = self.clock()
        since = now - self.window
        with self.db.read() as s:
            # A name's failures from this client count from its last successful login there on (ids give the order).
            here = (LoginAttempt.name == name, LoginAttempt.client == client)
            last_ok = s.scalar(select(func.max(LoginAttempt.id)).where(*here, LoginAttempt.ok))
            failed = LoginAttempt.ok.is_(False)
            by_name = s.scalar(select(func.count()).where(*here, failed, LoginAttempt.at > since,
                                                          LoginAttempt.id > (last_ok or 0)))
            by_client = s.scalar(select(func.count()).where(LoginAttempt.client == client, failed,
                                                            LoginAttempt.at > since))
            row = s.scalar(select(Reviewer).where(Reviewer.name == name, Reviewer.disabled.is_(False)))
        if by_name >= self.max_failures or by_client >= self.max_failures_per_client:
            minutes = max(1, round(self.window.total_seconds() / 60))
            raise LoginRefused(f"Too many failed logins. Try again in {minutes} minutes.", rate_limited=True)
        ok = verify_password(password or "", row.password_hash if row else _DUMMY_HASH) and row is not None
        with self.db.write() as s:
            s.add(LoginAttempt(name=name, client=client, ok=ok, at=now))
            s.execute(delete(LoginAttempt).where(LoginAttempt.at < now - timedelta(days=1)))
        if not ok:
            raise LoginRefused("Wrong name or password.")
        return ReviewerInfo(row.id, row.name, row.is_admin)

    def new_session(self, reviewer: ReviewerInfo) -> str:
        """A fresh random session token (the cookie value); only its hash is stored."""
        token = secrets.token_urlsafe(32)
        now = self.clock()
        with self.db.write() as s:
            s.execute(delete(Session).where(Session.expires_at < now))
            s.add(Session(token_hash=_token_hash(token), reviewer_id=reviewer.id, created_at=now,
                          expires_at=now + self.session_ttl))
        return token

    def session_user(self, token: str | None) -> ReviewerInfo | None:
        if not token or len(token) > 128:
            return None
        with self.db.read() as s:
            row = s.execute(select(Reviewer).join(Session, Session.reviewer_id == Reviewer.id).where(
                Session.token_hash == _token_hash(token), Session.expires_at > self.clock(),
                Reviewer.disabled.is_(False))).scalar()
            return ReviewerInfo(row.id, row.name, row.is_admin) if row else None

    def end_session(self, token: str | None) -> None:
        if token:
            with self.db.write() as s:
                s.execute(delete(Session).where(Session.token_hash == _token_hash(token)))
