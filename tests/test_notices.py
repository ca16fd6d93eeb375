"""Run-end notices by e-mail (a real local SMTP server) and webhook (a local HTTP receiver)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from pico_nb.contract.errors import ValidationError
from pico_nb.lab import Lab

from support import free_port

SECRET = "s3cret-smtp-Passw0rd"
TOKEN = "T000/B000/XXXXsecretXXXX"


class Inbox:
    """An aiosmtpd handler that keeps what it receives and says so."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.arrived = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(
            (envelope.rcpt_tos, message_from_bytes(envelope.content, policy=policy.default))
        )
        self.arrived.set()
        return "250 OK"


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    handler = Inbox()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


@pytest.fixture
def hook() -> Iterator[tuple[list[dict[str, Any]], threading.Event, int]]:
    received: list[dict[str, Any]] = []
    arrived = threading.Event()

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(
                {"path": self.path, "type": self.headers["Content-Type"], **json.loads(body)}
            )
            self.send_response(200)
            self.end_headers()
            arrived.set()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield received, arrived, server.server_address[1]
    finally:
        server.shutdown()


def test_email_and_webhook_arrive_when_a_run_ends(
    lab_for: Callable[..., Lab],
    frames: Path,
    tmp_path: Path,
    inbox,
    hook,
    caplog: pytest.LogCaptureFixture,
) -> None:
    handler, smtp_port = inbox
    received, arrived, http_port = hook
    lab = lab_for(
        "alice",
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        smtp_password=SECRET,
        smtp_from="pico@lab",
    )
    assert SECRET not in lab.settings.model_dump_json() and SECRET not in repr(lab.settings)
    url = f"http://127.0.0.1:{http_port}/services/{TOKEN}"
    chosen = lab.set_notifications(email="alice@example.org", webhook=url)
    assert chosen.email == "alice@example.org" and chosen.email_available
    assert chosen.webhook == f"http://127.0.0.1:{http_port}/…"  # the token is not shown back
    exp = lab.create_experiment(
        "mouse 12", str(frames), str(tmp_path / "out"), params={"exit_code": 3}
    )
    caplog.set_level(logging.DEBUG)
    run = lab.wait(lab.run_experiment(exp.id).id, timeout=60)
    assert run.status == "failed"
    lab.reconcile()  # what every Lab and the hub service do periodically
    assert handler.arrived.wait(30) and arrived.wait(30)
    ((rcpt, mail),) = handler.messages
    assert rcpt == ["alice@example.org"] and mail["From"] == "pico@lab"
    assert mail["Subject"] == "Run 1 of “mouse 12” failed"
    assert "exit code 3" in mail.get_content()
    (posted,) = received
    assert posted["path"] == f"/services/{TOKEN}" and posted["type"] == "application/json"
    assert posted["text"].startswith("Run 1 of “mouse 12” failed: exit code 3.")
    lab.reconcile()
    assert len(handler.messages) == 1 and len(received) == 1  # announced once
    logged = caplog.text + Path(run.log_path).read_text()
    assert SECRET not in logged and TOKEN not in logged


def test_settings_are_checked_and_failures_logged_without_secrets(
    settings_for: Callable[..., Any], frames: Path, tmp_path: Path, caplog
) -> None:
    lab = Lab(user="bob", settings=settings_for(""))
    with pytest.raises(ValidationError) as caught:
        lab.set_notifications(email="not an address", webhook="http://example.org/hook")
    assert set(caught.value.errors) == {"email", "webhook"}
    assert "https://" in caught.value.errors["webhook"]
    with pytest.raises(ValidationError, match="no mail server"):
        lab.set_notifications(email="bob@example.org")
    dead = f"http://127.0.0.1:{free_port()}/hooks/{TOKEN}"
    lab.set_notifications(webhook=dead)
    exp = lab.create_experiment("e", str(frames), str(tmp_path / "out"))
    caplog.set_level(logging.WARNING, logger="pico_nb.notices")
    lab.wait(lab.run_experiment(exp.id).id, timeout=60)
    lab.reconcile()
    assert "webhook notice not sent" in caplog.text and TOKEN not in caplog.text
    assert lab.set_notifications(webhook="").webhook is None
