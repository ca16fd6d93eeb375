"""Telling members their runs ended: e-mail over SMTP and Slack-compatible webhooks.

Each ended run is announced once: whoever sweeps first (any Lab's reconcile, the hub
service's periodic one) marks it announced in one transaction, then delivers outside it.
Addresses, webhook URLs (they carry tokens) and the SMTP password never reach a log.
"""

from __future__ import annotations

import json
import logging
import re
import smtplib
import urllib.request
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from urllib.parse import urlsplit

from sqlalchemy import select

from pico_nb.db import Database
from pico_nb.models import Run, User, utcnow
from pico_nb.settings import Settings
from pico_nb.text import duration

log = logging.getLogger("pico_nb.notices")

ENDED = ("completed", "failed", "cancelled")
TIMEOUT_SECONDS = 5.0
STALE_AFTER = timedelta(hours=1)  # a run that ended longer ago is marked, not announced
BATCH = 100
_EMAIL = re.compile(r"[^@\s<>,;]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}")
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


def check_email(value: str) -> str:
    """One plain address, or ValueError with the rule."""
    text = value.strip()
    if not _EMAIL.fullmatch(text):
        raise ValueError("must be one e-mail address such as alice@example.org")
    return text


def check_webhook(value: str) -> str:
    """An https URL (plain http only to this machine), or ValueError with the rule."""
    text = value.strip()
    parts = urlsplit(text)
    if len(text) > 2000 or not parts.hostname or any(c.isspace() for c in text):
        raise ValueError("must be a webhook URL such as https://hooks.slack.com/services/…")
    if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in _LOOPBACK):
        raise ValueError("must start with https:// (plain http only to this machine)")
    return text


def mask_webhook(url: str | None) -> str | None:
    """Enough of a webhook to recognise it, without the token in its path."""
    if not url:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/…"


@dataclass(frozen=True)
class Notice:
    """What to tell one member about one ended run, and where."""

    run_id: int
    email: str | None
    webhook: str | None
    subject: str
    text: str


def _notice(run: Run, owner: User) -> Notice:
    """The words of a run's end, as in the dashboard's history."""
    took = (
        duration((run.finished_at - run.started_at).total_seconds())
        if run.started_at and run.finished_at
        else "—"
    )
    subject = f"Run {run.number} of “{run.experiment.name}” {run.status}"
    text = (
        f"{subject}: {run.reason or run.status}. Experiment {run.experiment_id}, "
        f"run {run.number} by {owner.username}, took {took}."
    )
    return Notice(run.id, owner.notify_email, owner.notify_webhook, subject, text)


def claim_notices(db: Database) -> list[Notice]:
    """Mark ended runs as announced, in one transaction; return those someone asked to hear of."""
    with db.read() as session:  # most sweeps find nothing: skip the write lock then
        pending = select(Run.id).where(Run.status.in_(ENDED), Run.notified_at.is_(None))
        if session.scalar(pending.limit(1)) is None:
            return []
    notices = []
    now = utcnow()
    with db.write() as session:
        runs = session.scalars(
            select(Run)
            .where(Run.status.in_(ENDED), Run.notified_at.is_(None))
            .order_by(Run.id)
            .limit(BATCH)
            .with_for_update(skip_locked=True, of=Run)
        )
        for run in runs:
            run.notified_at = now
            owner = run.user
            fresh = run.finished_at is not None and now - run.finished_at < STALE_AFTER
            if fresh and (owner.notify_email or owner.notify_webhook):
                notices.append(_notice(run, owner))
    return notices


def _email(notice: Notice, settings: Settings) -> None:
    """One plain-text message through the configured mail server."""
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = notice.email
    message["Subject"] = notice.subject
    message.set_content(notice.text + "\n")
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=TIMEOUT_SECONDS) as smtp:
        if settings.smtp_starttls:
            smtp.starttls()
        if settings.smtp_username:
            smtp.login(settings.smtp_username, settings.smtp_password)
        smtp.send_message(message)


def _webhook(notice: Notice) -> None:
    """POST {"text": …}: what Slack, Mattermost and Teams incoming webhooks accept."""
    body = json.dumps({"text": notice.text}).encode()
    request = urllib.request.Request(
        notice.webhook or "",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
        response.read()


def deliver(notice: Notice, settings: Settings) -> None:
    """Send one notice by every way its member chose; a failure is logged without secrets."""
    if notice.email and settings.smtp_host:
        try:
            _email(notice, settings)
        except (OSError, smtplib.SMTPException) as exc:
            log.warning("run %d: e-mail notice not sent (%s)", notice.run_id, type(exc).__name__)
    if notice.webhook:
        try:
            _webhook(notice)
        except (OSError, ValueError) as exc:
            log.warning("run %d: webhook notice not sent (%s)", notice.run_id, type(exc).__name__)


def send_run_notices(db: Database, settings: Settings) -> int:
    """Announce every run that ended since the last sweep; how many notices went out."""
    notices = claim_notices(db)
    for notice in notices:
        deliver(notice, settings)
    return len(notices)
