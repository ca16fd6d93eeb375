"""MemberSpawner: each member's JupyterLab runs as their own locked OS account, in its home.

The hub user ``alice`` is the OS account ``pico-alice`` (made by ``pico-nb users add`` as
root), so the names a member signs in with stay the names pico records, and no notebook ever
runs as root or as the service account.
"""

from __future__ import annotations

import pwd
from collections.abc import Callable
from typing import Any

from jupyterhub.spawner import LocalProcessSpawner, set_user_setuid

from pico_nb.os_accounts import member_account

TERMINAL_SHELL = "/bin/bash"  # accounts have no login shell; JupyterLab's terminal needs one


class MemberSpawner(LocalProcessSpawner):
    """LocalProcessSpawner with the hub user mapped to their ``pico-<name>`` account."""

    def account(self) -> pwd.struct_passwd:
        """The member's entry in the password database."""
        return pwd.getpwnam(member_account(self.user.name))

    def make_preexec_fn(self, name: str) -> Callable[[], None]:
        """Become the member's account (uid, gid, groups) and start in its home."""
        return set_user_setuid(member_account(name))

    def user_env(self, env: dict[str, Any]) -> dict[str, Any]:
        """USER, HOME and a shell for terminals, from the member's account."""
        entry = self.account()
        env.update(USER=entry.pw_name, HOME=entry.pw_dir, SHELL=TERMINAL_SHELL)
        return env
