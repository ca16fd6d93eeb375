"""Accounts: who may log in, their passwords and admin rights, and the login throttle."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pico_nb import logins, passwords
from pico_nb.contract.errors import Conflict, NotFound, ValidationError
from pico_nb.inputs import short_text
from pico_nb.lab.core import LabCore
from pico_nb.lab.records import flag, user_record
from pico_nb.models import Experiment, User
from pico_nb.schemas import LoginOutcome, UserRecord
from pico_nb.validation import check_name


class AccountsMixin(LabCore):
    """The lab's accounts: managed by admins, each password changed by its own user."""

    def users(self) -> list[UserRecord]:
        """Every account, for admins."""
        self._require_admin("list accounts")
        with self.db.read() as session:
            return [user_record(u) for u in session.scalars(select(User).order_by(User.username))]

    def add_user(self, username: str, password: str | None, is_admin: bool = False) -> UserRecord:
        """Create an account with a salted argon2 hash; weak passwords are refused."""
        self._require_admin("create accounts")
        try:
            username = check_name(username)
        except ValueError as exc:
            raise ValidationError.one("username", str(exc)) from None
        if password is not None:
            passwords.check_strength(username, password)
        with self.db.write() as session:
            if session.scalar(select(User).where(User.username == username)) is not None:
                raise Conflict(f"user {username} already exists")
            row = User(
                username=username,
                password_hash=passwords.hash_password(password) if password else None,
                is_admin=flag(is_admin, "is_admin"),
            )
            session.add(row)
            session.flush()
            return user_record(row)

    def _account(self, session: Session, username: str) -> User:
        """An account by name, or NotFound; a name that is no name is refused, not queried."""
        if not isinstance(username, str) or short_text(username, "username") is None:
            raise ValidationError.one("username", "must be a user name")
        row = session.scalar(select(User).where(User.username == username))
        if row is None:
            raise NotFound(f"user {username} does not exist")
        return row

    def set_password(self, username: str, password: str) -> None:
        """Change a password: users their own, admins anyone's."""
        if username != self.username:
            self._require_admin("change another user's password")
        passwords.check_strength(username, password)
        with self.db.write() as session:
            self._account(session, username).password_hash = passwords.hash_password(password)

    def set_admin(self, username: str, is_admin: bool) -> UserRecord:
        """Grant or revoke admin rights."""
        self._require_admin("change admin rights")
        with self.db.write() as session:
            row = self._account(session, username)
            row.is_admin = flag(is_admin, "is_admin")
            return user_record(row)

    def delete_user(self, username: str) -> None:
        """Remove an account that owns nothing; experiments are never orphaned."""
        self._require_admin("delete accounts")
        with self.db.write() as session:
            row = self._account(session, username)
            owned = session.scalar(
                select(func.count(Experiment.id)).where(
                    Experiment.owner_id == row.id, Experiment.deleted_at.is_(None)
                )
            )
            if owned:
                raise Conflict(f"user {username} still owns {owned} experiment(s)")
            row.password_hash = None
            row.is_admin = False
            row.username = f"{row.username}#deleted-{row.id}"[:100]

    def verify_password(self, username: str, password: str) -> bool:
        """Check a login against the users table; constant work whether or not the user exists."""
        with self.db.read() as session:
            row = session.scalar(select(User).where(User.username == username))
            stored = row.password_hash if row else None
        return passwords.verify(stored, password)

    def attempt_login(
        self, username: str, password: str, address: str, policy: logins.Policy | None = None
    ) -> LoginOutcome:
        """Check a login under the per-account and per-address throttle: while a key is locked
        the password is not even checked, so parallel guesses cannot share one wait."""
        user_key, address_key = logins.keys(username, address)
        held = logins.claim(self.db, user_key, address_key, policy or logins.Policy())
        if held.retry_after > 0:
            return LoginOutcome(ok=False, retry_after=held.retry_after, failures=held.failures)
        if not self.verify_password(username, password):
            return LoginOutcome(ok=False, failures=held.failures)
        logins.succeeded(self.db, user_key, address_key, held)
        return LoginOutcome(ok=True)
