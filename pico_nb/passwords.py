"""Password policy and salted argon2 hashes, from a maintained library (argon2-cffi)."""

from __future__ import annotations

from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import Argon2Error

from pico_nb.contract.errors import ValidationError

_hasher = PasswordHasher()
MAX_PASSWORD = 1024


def check_strength(username: str, password: str) -> None:
    """Refuse passwords an attacker would try first (and megabyte 'passwords' too)."""
    if not isinstance(password, str):
        raise ValidationError.one("password", "must be text")
    if len(password) > MAX_PASSWORD:
        raise ValidationError.one("password", f"must be at most {MAX_PASSWORD} characters")
    if len(password) < 10:
        raise ValidationError.one("password", "must be at least 10 characters")
    if password.strip().lower() == str(username).lower():
        raise ValidationError.one("password", "must not be the username")


def hash_password(password: str) -> str:
    """A salted hash to store; the password itself is never stored or logged."""
    return _hasher.hash(password)


@cache
def _dummy_hash() -> str:
    """A hash to verify against for unknown users, so timing does not reveal who exists."""
    return _hasher.hash("pico-nb timing equaliser")


def verify(stored: str | None, password: str) -> bool:
    """True when the password matches; the same work is done when there is no stored hash."""
    try:
        return _hasher.verify(stored or _dummy_hash(), password) and stored is not None
    except (Argon2Error, ValueError):  # a mismatch, or a damaged stored hash
        return False
