"""Login throttling in the database, on SQLite and PostgreSQL: claimed atomically, per account
and per address, and a right password after the window is accepted at once (issue 12)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from pico_nb.lab import Lab
from pico_nb.logins import Policy
from pico_nb.models import LoginThrottle, utcnow

LabFor = Callable[..., Lab]
POLICY = Policy(free_failures=5, free_address_failures=1000, max_delay=60.0)


def _row(lab: Lab, key: str) -> LoginThrottle | None:
    with lab.db.read() as session:
        return session.get(LoginThrottle, key)


def _seed(lab: Lab, key: str, failures: int) -> None:
    """A key as earlier failures left it; unlocked means its window has passed."""
    with lab.db.write() as session:
        session.merge(
            LoginThrottle(key=key, failures=failures, locked_until=None, updated_at=utcnow())
        )


def test_parallel_guesses_cannot_share_one_wait(lab_for: LabFor) -> None:
    operator = Lab.operator(settings=lab_for("root").settings)
    operator.add_user("dave", "dave-secret-4")
    _seed(operator, "user:dave", failures=8)
    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(
            pool.map(
                lambda n: operator.attempt_login("dave", "wrong", f"10.0.0.{n}", POLICY), range(20)
            )
        )
    checked = [o for o in outcomes if o.retry_after == 0]
    assert len(checked) == 1 and not checked[0].ok  # one claimed the window, 19 were refused
    assert all(not o.ok and 0 < o.retry_after <= 60 for o in outcomes if o not in checked)
    assert _row(operator, "user:dave").failures == 9
    locked = operator.attempt_login("dave", "dave-secret-4", "10.0.0.1", POLICY)
    assert not locked.ok and locked.retry_after > 0  # the right password waits for the window
    _seed(operator, "user:dave", failures=9)  # the window has passed
    assert operator.attempt_login("dave", "dave-secret-4", "10.0.0.1", POLICY).ok
    assert _row(operator, "user:dave") is None  # and the count starts afresh


def test_an_address_is_locked_across_accounts(lab_for: LabFor) -> None:
    operator = Lab.operator(settings=lab_for("root").settings)
    policy = Policy(free_failures=100, free_address_failures=3, max_delay=60.0)
    _seed(operator, "addr:10.9.9.9", failures=9)
    assert not operator.attempt_login("a1", "guess", "10.9.9.9", policy).ok  # locks it
    assert operator.attempt_login("a2", "guess", "10.9.9.9", policy).retry_after > 0
    assert operator.attempt_login("a2", "guess", "10.1.1.1", policy).retry_after == 0
