"""How RemoteLab talks to the pico service: authenticated JSON over HTTP, the service's
errors turned back into Lab's exceptions, server-sent events parsed, and every id or name
checked before it becomes part of a URL. Plain urllib, so a kernel needs nothing extra."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

from pico_nb.contract.errors import Conflict, NotFound, PermissionDenied, PicoError, ValidationError
from pico_nb.inputs import as_id
from pico_nb.schemas import Record

R = TypeVar("R", bound=Record)


class ServiceUnavailable(PicoError):
    """The pico service did not answer; runs go on, try again shortly."""

    status = 503


ERRORS: dict[str, type[PicoError]] = {
    cls.__name__: cls for cls in (PermissionDenied, NotFound, Conflict)
}
BY_STATUS: dict[int, type[PicoError]] = {
    401: PermissionDenied,
    403: PermissionDenied,
    404: NotFound,
    502: ServiceUnavailable,  # the proxy, while the service restarts
    503: ServiceUnavailable,
}
TIMEOUT = 60.0
STREAM_TIMEOUT = 45.0  # the service sends a keepalive every 15 s
RECONNECT_SECONDS = 120.0  # a follower rides out a service restart this long


def raise_for(status: int, body: bytes) -> None:
    """Turn the service's JSON error back into the exception Lab would have raised."""
    try:
        data = json.loads(body)
    except ValueError:
        data = {}
    message = str(data.get("message") or f"the pico service answered {status}")
    if data.get("error") == "ValidationError" or (status == 400 and "errors" in data):
        raise ValidationError(data.get("errors") or {"request": message})
    cls = ERRORS.get(str(data.get("error"))) or BY_STATUS.get(status, PicoError)
    error = cls(message)
    error.status = status
    raise error


class ServiceClient:
    """A hub token's calls to the service's API under ``url``."""

    def __init__(self, url: str, token: str) -> None:
        self._url = url.rstrip("/") + "/api/"
        self._token = token

    def _open(
        self, method: str, path: str, query: Mapping[str, Any] | None, body: Any, timeout: float
    ) -> Any:
        """One HTTP request with the server's token; errors become Lab's exceptions."""
        pairs = {k: text(v) for k, v in (query or {}).items() if v is not None}
        url = self._url + path + ("?" + urllib.parse.urlencode(pairs) if pairs else "")
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Authorization", f"token {self._token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            return urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as exc:
            with exc:
                raise_for(exc.code, exc.read())
        except OSError as exc:
            raise ServiceUnavailable(f"the pico service is not reachable: {exc}") from None

    def _call(
        self,
        method: str,
        path: str,
        query: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> Any:
        """JSON in, JSON out (bytes for files, None for 204)."""
        with self._open(method, path, query, body, TIMEOUT) as response:
            data = response.read()
            if response.status == 204:
                return None
            if response.headers.get_content_type() == "application/json":
                return json.loads(data)
            return data

    def _one(self, model: type[R], method: str, path: str, **kwargs: Any) -> R:
        return model.model_validate(self._call(method, path, **kwargs))

    def _many(self, model: type[R], method: str, path: str, **kwargs: Any) -> list[R]:
        return [model.model_validate(item) for item in self._call(method, path, **kwargs)]


def eid(value: Any) -> str:
    """An experiment id as a path segment, checked here as Lab checks it: a value that is no
    id (empty, '..', huge) must not turn into another URL, and fails with Lab's error."""
    return str(as_id(value, "experiment_id"))


def rid(value: Any) -> str:
    """A run id as a path segment, checked as Lab checks it."""
    return str(as_id(value, "run_id"))


def seg(value: Any) -> str:
    """One URL path segment: ids and names can never add a path or a query."""
    return urllib.parse.quote(str(value), safe="")


def text(value: Any) -> str:
    """Query values as the service parses them."""
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def events(stream: Any) -> Iterator[tuple[str, str]]:
    """Parse server-sent events (event name, data) from a line-readable response."""
    kind = "message"
    data: list[str] = []
    for raw in stream:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if data:
                yield kind, "\n".join(data)
            kind, data = "message", []
        elif line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())
        elif line.startswith(":"):  # a keepalive: lets the reader check whether to stop
            yield "keepalive", ""
