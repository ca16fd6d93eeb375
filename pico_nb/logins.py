"""Login throttling per account and per address, checked and counted atomically in the database.

An attempt first *claims* its keys in one write transaction: if any key is locked the attempt
is refused at once, without checking the password; otherwise it is counted as a failure and,
past the free failures, locks the key for a doubling window, before the password is checked.
So forty parallel guesses cannot share one wait: the first claims the window, the other
thirty-nine find it locked. A correct password clears the account's count, and a correct
password after the window is accepted at once. The rows survive a hub restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from pico_nb.db import LOGIN_LOCK, Database, advisory_xact_lock
from pico_nb.hub_settings import LoginSettings
from pico_nb.models import LoginThrottle, utcnow

_SETTING = LoginSettings.model_fields


@dataclass(frozen=True)
class Policy:
    """How many failures are free and how long the longest lock lasts (`hub.login` settings)."""

    free_failures: int = _SETTING["free_failures"].default
    free_address_failures: int = _SETTING["free_address_failures"].default
    max_delay: float = _SETTING["max_delay"].default

    def window(self, failures: int, free: int) -> float:
        """Seconds locked after this many failures: 1, 2, 4 … past the free ones, capped."""
        over = failures - free
        return 0.0 if over <= 0 else min(2.0 ** (over - 1), self.max_delay)


@dataclass(frozen=True)
class Claim:
    """An attempt's hold on its keys: refused with a wait, or allowed (and counted)."""

    retry_after: float
    failures: int
    address_lock: tuple[datetime | None, datetime | None] = (None, None)
    """The address key's lock before this attempt and the one this attempt set."""


def keys(username: str, address: str) -> tuple[str, str]:
    """The account's key and the address's key (bounded, so a long name is still one key)."""
    return f"user:{username}"[:300], f"addr:{address}"[:300]


def _lock(session: Session) -> None:
    """Serialise claims: SQLite's BEGIN IMMEDIATE already does; PostgreSQL takes a lock."""
    advisory_xact_lock(session, LOGIN_LOCK)


def _row(session: Session, key: str) -> LoginThrottle:
    """The key's row, created empty on first sight."""
    row = session.get(LoginThrottle, key)
    if row is None:
        row = LoginThrottle(key=key, failures=0, locked_until=None, updated_at=utcnow())
        session.add(row)
    return row


def claim(db: Database, user_key: str, address_key: str, policy: Policy) -> Claim:
    """Refuse while a key is locked; else count this attempt as a failure until it succeeds."""
    now = utcnow()
    with db.write() as session:
        _lock(session)
        rows = {user_key: _row(session, user_key), address_key: _row(session, address_key)}
        waits = [(r.locked_until - now).total_seconds() for r in rows.values() if r.locked_until]
        wait = max([0.0, *waits])
        if wait > 0:
            return Claim(wait, rows[user_key].failures)
        address_before = rows[address_key].locked_until
        for key, row in rows.items():
            row.failures += 1
            free = policy.free_failures if key == user_key else policy.free_address_failures
            seconds = policy.window(row.failures, free)
            row.locked_until = now + timedelta(seconds=seconds) if seconds else None
            row.updated_at = now
        address_lock = (address_before, rows[address_key].locked_until)
        return Claim(0.0, rows[user_key].failures, address_lock)


def succeeded(db: Database, user_key: str, address_key: str, held: Claim) -> None:
    """A correct password: the account starts afresh; the address gets its attempt back."""
    with db.write() as session:
        _lock(session)
        row = session.get(LoginThrottle, user_key)
        if row is not None:
            session.delete(row)
        row = session.get(LoginThrottle, address_key)
        if row is not None:
            locked_before, locked_by_us = held.address_lock
            row.failures = max(row.failures - 1, 0)
            if row.locked_until == locked_by_us:
                row.locked_until = locked_before
