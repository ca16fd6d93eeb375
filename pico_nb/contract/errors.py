"""The errors every layer raises, so every front end can turn them into a message."""

from __future__ import annotations


class PicoError(Exception):
    """Base of the errors a user may see; its text is meant for people."""

    status = 500


class ValidationError(PicoError):
    """Bad input: carries every bad field with the rule it broke."""

    status = 400

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__("; ".join(f"{field}: {rule}" for field, rule in self.errors.items()))

    @classmethod
    def one(cls, field: str, rule: str) -> ValidationError:
        """Build the common single-field case."""
        return cls({field: rule})


class PermissionDenied(PicoError):
    """The user may not see or change this thing."""

    status = 403


class NotFound(PicoError):
    """The thing does not exist (or is hidden from this user)."""

    status = 404


class Conflict(PicoError):
    """The request clashes with the current state, e.g. editing during a run."""

    status = 409
