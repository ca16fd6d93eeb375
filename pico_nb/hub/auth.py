"""PicoAuthenticator: hub logins checked against pico's users table (argon2 hashes via Lab).

Accounts are made with ``pico-nb users add``; there is no default account and no default
password. The table's admin flag becomes the hub's admin flag at login and at every refresh.
Any other JupyterHub authenticator can replace this one: the pico service trusts the hub.
"""

from __future__ import annotations

import asyncio
import time
from functools import cached_property
from typing import Any

from jupyterhub.auth import Authenticator
from traitlets import Float, Integer, default

from pico_nb.lab import Lab
from pico_nb.settings import load_settings


class PicoAuthenticator(Authenticator):
    """Username and password from the hub's login form, checked against the users table."""

    free_failures = Integer(
        5, help="Failed logins for one account before each further try is slowed down."
    ).tag(config=True)
    max_delay = Float(
        60.0, help="Longest wait (seconds) before checking a slowed-down account's password."
    ).tag(config=True)

    @default("allow_all")
    def _allow_all(self) -> bool:
        """Whoever has an account in the table may log in; the table is the allow list."""
        return True

    @default("auth_refresh_age")
    def _refresh_age(self) -> int:
        """Re-read the admin flag and account each minute, so `pico-nb users` acts promptly."""
        return 60

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._failures: dict[str, int] = {}

    @cached_property
    def _lab(self) -> Lab:
        """The operator's view of the table, opened once (the hub runs where the database is)."""
        return Lab.operator(settings=load_settings())

    def _account(self, username: str) -> dict[str, Any] | None:
        """The hub's auth model for an account that can log in, or None."""
        for user in self._lab.users():
            if user.username == username and user.has_password:
                return {"name": username, "admin": user.is_admin}
        return None

    def delay(self, username: str) -> float:
        """Seconds to wait before checking: doubling after the free failures, capped."""
        over = self._failures.get(username, 0) - self.free_failures
        return 0.0 if over < 0 else min(2.0**over, self.max_delay)

    async def authenticate(self, handler: Any, data: dict[str, str]) -> dict[str, Any] | None:
        """Check in a thread (argon2 is deliberately slow); log failures, never the password."""
        username = self.normalize_username(str(data.get("username", "")))
        password = str(data.get("password", ""))
        address = handler.request.remote_ip if handler is not None else "-"
        wait = self.delay(username)
        if wait:
            await asyncio.sleep(wait)
        started = time.monotonic()
        ok = await asyncio.to_thread(self._lab.verify_password, username, password)
        model = await asyncio.to_thread(self._account, username) if ok else None
        if model is None:
            self._failures[username] = self._failures.get(username, 0) + 1
            self.log.warning(
                "failed login for %r from %s (%d in a row; checked in %.2fs)",
                username,
                address,
                self._failures[username],
                time.monotonic() - started,
            )
            return None
        self._failures.pop(username, None)
        return model

    async def refresh_user(self, user: Any, handler: Any = None) -> bool | dict[str, Any]:
        """Follow the table: a deleted account must log in again, admin changes apply."""
        model = await asyncio.to_thread(self._account, user.name)
        return False if model is None else model
