"""Logging in through the hub's form: the users table decides, failures are slowed and logged."""

from __future__ import annotations

import http.cookiejar
import re
import time
import urllib.error
import urllib.parse
import urllib.request

from pico_nb.lab import Lab
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

    def login(self, username: str, password: str) -> tuple[int, str]:
        """Submit the form with its XSRF token; return the status and where it redirects."""
        with self.opener.open(f"{self.hub.url}/hub/login") as page:
            xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.read().decode())
        assert xsrf is not None
        form = {"username": username, "password": password, "_xsrf": xsrf.group(1)}
        request = urllib.request.Request(
            f"{self.hub.url}/hub/login", data=urllib.parse.urlencode(form).encode()
        )
        try:
            with self.opener.open(request) as answer:
                return answer.status, answer.headers.get("Location", "")
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, exc.headers.get("Location", "")


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


def test_repeated_failures_are_slowed_down(hub: Hub) -> None:
    settings = load_settings(hub.root / "home")
    Lab.operator(settings=settings).add_user("dave", "dave-secret-4")
    client = Browserless(hub)
    for _ in range(5):
        assert client.login("dave", "wrong-password")[0] == 403
    timings = []
    for _ in range(2):
        started = time.monotonic()
        assert client.login("dave", "wrong-password")[0] == 403
        timings.append(time.monotonic() - started)
    assert timings[0] >= 1.0 and timings[1] >= 2.0, timings
    started = time.monotonic()
    assert client.login("dave", "dave-secret-4")[0] == 302  # slowed, not locked out
    assert time.monotonic() - started >= 4.0
    started = time.monotonic()
    assert Browserless(hub).login("dave", "wrong-password")[0] == 403  # success reset the count
    assert time.monotonic() - started < 1.0


def test_the_single_account_hub_warns_that_members_are_not_isolated(hub: Hub) -> None:
    warning = "warning: --single-account: every member's notebook runs as root"
    assert warning in hub.log_file.read_text()
    assert hub.hub_api("GET", "users/alice").status == 200  # and it serves
