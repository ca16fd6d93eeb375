"""Logging in through the hub's form: the users table decides; failures are throttled per account
and address in the database, and logged with the true address."""

from __future__ import annotations

import http.cookiejar
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from pico_nb.lab import Lab
from pico_nb.models import LoginThrottle, utcnow
from pico_nb.settings import load_settings

from lab_server import PASSWORDS, Hub


class Browserless:
    """A cookie-keeping client that submits the hub's login form without following redirects."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect()
        )

    def form(self, headers: dict[str, str] | None = None) -> str:
        """Load the login page, keeping its XSRF cookie; return the form's XSRF token."""
        page_request = urllib.request.Request(f"{self.hub.url}/hub/login", headers=headers or {})
        with self.opener.open(page_request) as page:
            xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.read().decode())
        assert xsrf is not None
        self.xsrf = xsrf.group(1)
        return self.xsrf

    def post(
        self, username: str, password: str, headers: dict[str, str] | None = None
    ) -> tuple[int, str]:
        """Submit the form; return the status and where it redirects (or the error page)."""
        form = {"username": username, "password": password, "_xsrf": self.xsrf}
        request = urllib.request.Request(
            f"{self.hub.url}/hub/login",
            data=urllib.parse.urlencode(form).encode(),
            headers=headers or {},
        )
        try:
            with self.opener.open(request) as answer:
                return answer.status, answer.headers.get("Location", "")
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, exc.headers.get("Location", "") or exc.read().decode()

    def login(
        self, username: str, password: str, headers: dict[str, str] | None = None
    ) -> tuple[int, str]:
        """Load the form and submit it with its XSRF token, both with the same headers (the
        hub's anonymous XSRF token is bound to the address it believes)."""
        self.form(headers)
        return self.post(username, password, headers)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def test_login_with_the_users_table(hub: Hub) -> None:
    status, location = Browserless(hub).login("carol", PASSWORDS["carol"])
    assert status == 302 and "/login" not in location
    admin = hub.hub_api("GET", "users/carol").json["admin"]
    assert admin is True  # the table's admin flag is the hub's admin flag


def test_wrong_password_and_unknown_user_are_refused_and_logged(hub: Hub) -> None:
    client = Browserless(hub)
    assert client.login("bob", "not-bobs-password")[0] == 403
    assert client.login("mallory", "whatever-it-is")[0] == 403
    assert client.login("bob", "")[0] == 403
    log = hub.log_file.read_text()
    assert re.search(r"failed login for 'bob' from 127\.0\.0\.1", log)
    assert re.search(r"failed login for 'mallory' from 127\.0\.0\.1", log)
    assert "not-bobs-password" not in log and "whatever-it-is" not in log


def _throttle(hub: Hub, key: str) -> LoginThrottle | None:
    """The hub's throttle row for a key, read from the lab database."""
    with Lab.operator(settings=load_settings(hub.root / "home")).db.read() as session:
        return session.get(LoginThrottle, key)


def _set_throttle(hub: Hub, key: str, failures: int, locked_for: float) -> None:
    """Put a key in a known state, as a run of earlier failures would have left it."""
    until = utcnow() + timedelta(seconds=locked_for) if locked_for else None
    with Lab.operator(settings=load_settings(hub.root / "home")).db.write() as session:
        session.merge(LoginThrottle(key=key, failures=failures, locked_until=until))


def _wait_until_unlocked(hub: Hub, key: str) -> None:
    """Sleep to the end of the key's lock window (a time the database states)."""
    row = _throttle(hub, key)
    if row is not None and row.locked_until is not None:
        time.sleep(max(0.0, (row.locked_until - utcnow()).total_seconds()) + 0.05)


def test_repeated_failures_lock_the_account_then_the_right_password_is_accepted_at_once(
    hub: Hub,
) -> None:
    hub.add_member("dave", "dave-secret-4")
    client = Browserless(hub)
    for _ in range(5):  # five free failures
        assert client.login("dave", "wrong-password")[0] == 403
    _set_throttle(hub, "user:dave", failures=7, locked_for=0)  # as two more windows left it
    assert client.login("dave", "wrong-password")[0] == 403  # checked; locks for 4 s
    status, page = client.login("dave", "dave-secret-4")
    assert status == 429, status  # locked: not even the right password is checked
    assert "try again in" in page
    assert re.search(
        r"refused login for 'dave' from 127\.0\.0\.1: locked", hub.log_file.read_text()
    )
    _wait_until_unlocked(hub, "user:dave")
    started = time.monotonic()
    assert client.login("dave", "dave-secret-4")[0] == 302
    assert time.monotonic() - started < 5.0  # accepted at once, not after a minute
    assert _throttle(hub, "user:dave") is None  # success reset the count
    started = time.monotonic()
    assert Browserless(hub).login("dave", "wrong-password")[0] == 403
    assert time.monotonic() - started < 5.0


def test_forty_parallel_wrong_logins_are_throttled_as_a_sequence(hub: Hub) -> None:
    hub.add_member("erin", "erin-secret-55")
    _set_throttle(hub, "user:erin", failures=8, locked_for=0)  # eight failures behind it
    clients = [Browserless(hub) for _ in range(40)]
    for client in clients:
        client.form()  # every attacker holds a form first, so the posts really race
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=40) as pool:
        statuses = list(pool.map(lambda c: c.post("erin", "wrong-password")[0], clients))
    elapsed = time.monotonic() - started
    checked = statuses.count(403)
    # the first attempt claimed an 8 s window; the others found it locked and were not checked
    assert set(statuses) <= {403, 429}, statuses
    assert 1 <= checked <= 1 + int(elapsed // 8), (checked, elapsed)
    assert _throttle(hub, "user:erin").failures == 8 + checked
    _wait_until_unlocked(hub, "user:erin")
    started = time.monotonic()
    assert Browserless(hub).login("erin", "erin-secret-55")[0] == 302
    assert time.monotonic() - started < 5.0


def test_a_lock_survives_a_hub_restart(hub: Hub) -> None:
    hub.add_member("fred", "fred-secret-66")
    _set_throttle(hub, "user:fred", failures=12, locked_for=600)
    hub.restart()
    assert Browserless(hub).login("fred", "fred-secret-66")[0] == 429
    _set_throttle(hub, "user:fred", failures=12, locked_for=0)  # the window has passed
    assert Browserless(hub).login("fred", "fred-secret-66")[0] == 302


def test_the_logged_address_is_not_taken_from_client_headers(hub: Hub) -> None:
    forged = {"X-Real-Ip": "203.0.113.7", "X-Forwarded-For": "198.51.100.9"}
    assert Browserless(hub).login("bob", "still-not-bobs", headers=forged)[0] == 403
    lines = hub.log_file.read_text().splitlines()
    ours = [line for line in lines if re.search(r"(failed|refused) login for", line)]
    assert "from 127.0.0.1" in [line for line in ours if "'bob'" in line][-1]
    assert not [line for line in ours if "203.0.113.7" in line or "198.51.100.9" in line]


def test_the_single_account_hub_warns_that_members_are_not_isolated(hub: Hub) -> None:
    warning = "warning: --single-account: every member's notebook runs as root"
    assert warning in hub.log_file.read_text()
    assert hub.hub_api("GET", "users/alice").status == 200  # and it serves
