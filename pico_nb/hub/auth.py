"""PicoAuthenticator: hub logins checked against pico's users table (argon2 hashes via Lab).

Accounts are made with ``pico-nb users add``; there is no default account and no default
password. The table's admin flag becomes the hub's admin flag at login and at every refresh.
Any other JupyterHub authenticator can replace this one: the pico service trusts the hub.
The throttle's traitlets are the ``hub.login`` settings, which :func:`pico_nb.hub.config.configure`
passes in; a site's config may still set them after it.
"""

from __future__ import annotations

import asyncio
import time
from functools import cached_property
from typing import Any

from jupyterhub.auth import Authenticator
from tornado import web
from traitlets import Float, Integer, List, Unicode, default

from pico_nb.hub_settings import LoginSettings
from pico_nb.lab import Lab
from pico_nb.logins import Policy
from pico_nb.settings import load_settings

_DEFAULTS = LoginSettings.model_validate({})


def _help(name: str) -> str:
    """A traitlet's help is its setting's description (`hub.login.<name>`), written once."""
    return f"{LoginSettings.model_fields[name].description} Setting hub.login.{name}."


class PicoAuthenticator(Authenticator):
    """Username and password from the hub's login form, checked against the users table."""

    free_failures = Integer(_DEFAULTS.free_failures, help=_help("free_failures")).tag(config=True)
    free_address_failures = Integer(
        _DEFAULTS.free_address_failures, help=_help("free_address_failures")
    ).tag(config=True)
    max_delay = Float(_DEFAULTS.max_delay, help=_help("max_delay")).tag(config=True)
    trusted_proxies = List(Unicode(), _DEFAULTS.trusted_proxies, help=_help("trusted_proxies")).tag(
        config=True
    )

    @default("allow_all")
    def _allow_all(self) -> bool:
        """Whoever has an account in the table may log in; the table is the allow list."""
        return True

    @default("auth_refresh_age")
    def _refresh_age(self) -> int:
        """Re-read the admin flag and account each minute, so `pico-nb users` acts promptly."""
        return 60

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

    @property
    def policy(self) -> Policy:
        """The throttle's settings as configured."""
        return Policy(self.free_failures, self.free_address_failures, self.max_delay)

    def client_address(self, handler: Any) -> str:
        """The peer's address, or the one a trusted proxy says it saw: never a header the
        client may have written itself."""
        if handler is None:
            return "-"
        context = getattr(handler.request.connection, "context", None)
        address = getattr(context, "address", None)
        peer = address[0] if isinstance(address, tuple) and address else str(address or "-")
        if peer not in self.trusted_proxies:
            return peer
        forwarded = handler.request.headers.get("X-Forwarded-For", "")
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        return hops[-1][:100] if hops else peer

    async def authenticate(self, handler: Any, data: dict[str, str]) -> dict[str, Any] | None:
        """Check in a thread (argon2 is deliberately slow) under the database-held throttle;
        log failures with the true address, never the password."""
        username = self.normalize_username(str(data.get("username", "")))[:200]
        password = str(data.get("password", ""))
        address = self.client_address(handler)
        started = time.monotonic()
        outcome = await asyncio.to_thread(
            self._lab.attempt_login, username, password, address, self.policy
        )
        if outcome.retry_after > 0:
            self.log.warning(
                "refused login for %r from %s: locked for %.0fs after %d failures",
                username,
                address,
                outcome.retry_after,
                outcome.failures,
            )
            raise web.HTTPError(
                429,
                "Too many failed logins for this account or address; try again in %d s",
                int(outcome.retry_after) + 1,
            )
        model = await asyncio.to_thread(self._account, username) if outcome.ok else None
        if model is None:
            self.log.warning(
                "failed login for %r from %s (%d in a row; checked in %.2fs)",
                username,
                address,
                outcome.failures,
                time.monotonic() - started,
            )
        return model

    async def refresh_user(self, user: Any, handler: Any = None) -> bool | dict[str, Any]:
        """Follow the table: a deleted account must log in again, admin changes apply."""
        model = await asyncio.to_thread(self._account, user.name)
        return False if model is None else model
