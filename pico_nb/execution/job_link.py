"""The job's side of reporting through the pico service, for a batch job that runs as the
run's owner and may not open the lab's database (see :mod:`pico_nb.execution.job_desk`).

:class:`JobLink` posts JSON to the service's ``api/jobs/<run>/…`` routes with the run's token;
the service being away (no answer, a 5xx) is a ``ConnectionError``, which the supervisor rides
out as it rides out a database outage. :class:`ServiceLedger` and :class:`ServiceShipper` are
the supervisor's ledger and log shipper over that link. Only the standard library is used: a
compute node needs nothing but pico-nb itself.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from pico_nb.execution.reports import Report

RUN_TOKEN_HEADER = "X-Pico-Run-Token"
TIMEOUT = 15.0
SEND_BYTES = 1 << 16
"""At most this much log per request: one entry of the live stream."""
SEND_SECONDS = 0.1
"""How long new log bytes may wait to be sent together."""


class JobRefused(Exception):
    """The service said no: a wrong token, a run that is not this job's, a bad report."""


class JobLink:
    """Requests to the pico service on behalf of one run, with its token."""

    def __init__(self, url: str, run_id: int, token: str) -> None:
        self.base = f"{url.rstrip('/')}/api/jobs/{run_id}/"
        self.token = token

    def post(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        """One request; ConnectionError when the service is away, JobRefused when it says no."""
        request = urllib.request.Request(
            self.base + action,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", RUN_TOKEN_HEADER: self.token},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
                return dict(json.loads(answer.read()))
        except urllib.error.HTTPError as exc:
            message = _message(exc)
            if exc.code >= 500:
                raise ConnectionError(f"the pico service answered {exc.code}: {message}") from None
            raise JobRefused(f"the pico service refused ({exc.code}): {message}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ConnectionError(f"the pico service does not answer: {reason}") from None

    def claim(self, job_id: str, node: dict[str, Any]) -> dict[str, Any] | None:
        """The run's launch plan for this job, or None when there is nothing to do."""
        plan = self.post("claim", {"job_id": job_id, "node": node})["plan"]
        return dict(plan) if plan else None


def _message(exc: urllib.error.HTTPError) -> str:
    """The service's words from a JSON error answer."""
    with contextlib.suppress(Exception):
        return str(json.loads(exc.read()).get("message", ""))
    return exc.reason if isinstance(exc.reason, str) else ""


class ServiceLedger:
    """A supervisor's reports, through the service."""

    keeper = "pico service"

    def __init__(self, link: JobLink) -> None:
        self.link = link

    def write(self, report: Report) -> str | None:
        stop = self.link.post("report", report.to_json()).get("stop")
        return str(stop) if stop else None


class ServiceShipper:
    """The log to the service as it is written, in order, resent after an outage; close()
    returns once every byte is kept, or raises if the service stays away ``patience`` s."""

    def __init__(self, link: JobLink, patience: float) -> None:
        self.link, self.patience = link, patience
        self._cond = threading.Condition()
        self._pending = bytearray()  # written, not yet kept by the service
        self._kept = 0  # the service's size of the log
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="ship-log", daemon=True)
        self._thread.start()

    def append(self, data: bytes) -> None:
        with self._cond:
            self._pending += data
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join()
        if self._pending:  # the record still gets its end; the job's output says what is missing
            print(f"{len(self._pending)} bytes of the log could not be sent", flush=True)

    def _loop(self) -> None:
        """Send what is pending; back off while the service is away, give up after patience."""
        away_since: float | None = None
        while True:
            with self._cond:
                if not self._pending and not self._closing:
                    self._cond.wait()
                if not self._pending and self._closing:
                    return
                full = len(self._pending) >= SEND_BYTES
            time.sleep(0 if full else SEND_SECONDS)  # a short wait gathers lines into a piece
            with self._cond:
                piece = bytes(self._pending[:SEND_BYTES])
            try:
                self._send(piece)
                away_since = None
            except ConnectionError:
                away_since = away_since or time.monotonic()
                if self._closing and time.monotonic() - away_since > self.patience:
                    return
                time.sleep(1.0)
            except JobRefused:
                return  # the run is over for the service: nothing more will be kept

    def _send(self, piece: bytes) -> None:
        """Send one piece from the service's size; drop what it now keeps."""
        body = {"start": self._kept, "data": base64.b64encode(piece).decode()}
        size = int(self.link.post("log", body)["size"])
        if size < self._kept:  # resending could never close the gap: the bytes are gone here
            raise JobRefused(f"the pico service keeps {size} bytes of the log, not {self._kept}")
        with self._cond:
            del self._pending[: max(0, min(size - self._kept, len(self._pending)))]
            self._kept = max(self._kept, size)
