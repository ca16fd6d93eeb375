"""Every REST route and every RemoteLab method, fed hostile input through the real hub: only 4xx
answers in JSON (never a 500 or a traceback), the field named, nothing stored, and no file
outside the member's folders served or removed (issue 12's findings)."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pico_nb.contract.errors import Conflict, NotFound, PermissionDenied, ValidationError
from pico_nb.hub import routes, wire
from pico_nb.hub.client import RemoteLab
from pico_nb.hub.transport import ServiceUnavailable

from fuzz_values import bad_ids, deep_json, spoofed_text, unknown_words
from lab_server import Hub, Response

FUZZ = settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
BAD_IDS = ["99999999999999999999999999999999", "9223372036854775808", "0", "-1", "1e20", "abc",
           "1.5", "%00", "%E2%80%AE7", "9" * 5000]  # fmt: skip
BAD_QUERIES = [
    "offset=1e20",
    "offset=100000000000000000000000000000",
    "offset=-1",
    "limit=lots",
    "scope=foo",
    "status=foo",
    "sort=foo",
    "descending=maybe",
    "remove_outputs=yes",
    "from_tail=-5",
    "bogus=1",
    "path=../../etc/passwd",
    "path=/etc/passwd",
    "path=" + "a" * 5000,
    "search=%E2%80%AE",
    "owner=%E2%80%AEevil",
]
BAD_BODIES: list[bytes] = [
    b"{",
    b"[1, 2]",
    b'"text"',
    b'{"name": NaN}',
    b'{"name": Infinity}',
    b"\xff\xfe{}",
    b'{"n": ' + b"9" * 5000 + b"}",
    deep_json(100_000),
    json.dumps({"name": "a" * (10 << 20)}).encode(),
    json.dumps({"name": 1.5, "shared": "false", "is_admin": "yes", "password": 12}).encode(),
    json.dumps({"name": "bad\u202ename", "params": {"lines": 1e300}}).encode(),
    json.dumps({"params": {"wait_file": "--out_path", "lines": 10**30}}).encode(),
    json.dumps({"input_path": "/etc", "output_path": "../../escape", "colour": "red"}).encode(),
]


def raw(method: str, url: str, token: str, data: bytes | None = None) -> Response:
    """One request with a body sent as is (malformed, deep or huge)."""
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", f"token {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return Response(answer.status, answer.read(), answer.headers)
    except urllib.error.HTTPError as exc:
        with exc:
            return Response(exc.code, exc.read(), exc.headers)


def refused(answer: Response, where: str) -> dict[str, Any]:
    """A 4xx in JSON with an error name, and no traceback: what every bad request must get."""
    assert 400 <= answer.status < 500, (where, answer.status, answer.body[:300])
    assert answer.headers["Content-Type"].startswith("application/json"), where
    assert "Traceback" not in answer.body.decode(errors="replace"), where
    body = answer.json
    assert body["error"], where
    return body


def _routes(eid: int, rid: int) -> list[tuple[str, str]]:
    """Every (method, path) the service serves, with real ids in the path."""
    out = []
    for pattern, methods in routes.ROUTES.items():
        path = pattern.replace(routes.PATH_ID.format("experiment_id"), str(eid))
        path = path.replace(routes.PATH_ID.format("run_id"), str(rid))
        path = path.replace(routes.PATH_ID.format("username"), "alice")
        out += [(method, path) for method in methods]
    out += [("GET", f"runs/{rid}/log/download"), ("GET", f"runs/{rid}/log/follow")]
    return out


def _stored(hub: Hub) -> tuple[int, int]:
    """Experiments (everyone's, as the admin sees them) and accounts: must not change."""
    experiments = hub.call("carol", "GET", "experiments/count?scope=all").json
    users = len(hub.call("carol", "GET", "users").json)
    return experiments, users


@pytest.fixture(scope="module")
def finished(hub: Hub) -> dict[str, Any]:
    """An experiment of alice's with a completed run."""
    body = {
        "name": "fuzz target",
        "input_path": str(hub.data / "frames"),
        "output_path": str(hub.data / "out" / "fuzz-target"),
        "params": {},
    }
    exp = hub.call("alice", "POST", "experiments", body).json
    run = hub.call("alice", "POST", f"experiments/{exp['id']}/run").json
    lab = RemoteLab(url=hub.service_url(), token=hub.token("alice"))
    assert lab.wait(run["id"], timeout=60).status == "completed"
    return {"exp": exp, "run": run}


def test_every_route_answers_hostile_input_with_4xx(hub: Hub, finished: dict[str, Any]) -> None:
    eid, rid = finished["exp"]["id"], finished["run"]["id"]
    token = hub.token("alice")
    before = _stored(hub)
    routes = _routes(eid, rid)
    for method, path in routes:
        for bad in BAD_IDS:  # every id segment replaced by something that is no id
            bad_path = re.sub(rf"(experiments|runs)/({eid}|{rid})(?=/|$)", rf"\1/{bad}", path)
            if bad_path != path:
                body = b"{}" if method in ("POST", "PATCH", "PUT") else None
                refused(raw(method, f"{hub.api}/{bad_path}", token, body), f"{method} {bad_path}")
        if path.endswith("/log/download"):
            continue  # takes no arguments
        if path.endswith("/log/follow"):
            for query in ("offset=1e20", "offset=-1", "from_tail=-5", "from_tail=1e30"):
                refused(raw(method, f"{hub.api}/{path}?{query}", token), f"{path}?{query}")
        elif method in ("GET", "DELETE"):
            for query in BAD_QUERIES:
                answer = raw(method, f"{hub.api}/{path}?{query}", token)
                refused(answer, f"{method} {path}?{query}")
        else:
            for data in BAD_BODIES:
                answer = raw(method, f"{hub.api}/{path}", token, data)
                refused(answer, f"{method} {path} {data[:40]!r}")
    assert _stored(hub) == before
    assert hub.call("alice", "GET", f"experiments/{eid}").json["name"] == "fuzz target"


def test_an_unknown_scope_is_a_400_not_every_members_experiments(
    hub: Hub, finished: dict[str, Any]
) -> None:
    for path in ("experiments?scope=foo", "experiments/count?scope=foo"):
        body = refused(hub.call("bob", "GET", path), path)
        assert "scope" in body["errors"]
    bob = RemoteLab(url=hub.service_url(), token=hub.token("bob"))
    for call in (lambda: bob.experiments(scope="foo"), lambda: bob.count_experiments(scope="x")):
        with pytest.raises(ValidationError) as info:
            call()
        assert "scope" in info.value.errors
    assert all(e.owner == "bob" for e in bob.experiments(limit=1000))


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("experiments?offset=1e20", "offset"),
        ("experiments?offset=100000000000000000000000000000", "offset"),
        ("experiments?status=foo", "status"),
        ("experiments?sort=evil", "sort"),
        ("experiments/99999999999999999999999999999999", "experiment_id"),
        ("runs/99999999999999999999999999999999/log", "run_id"),
        ("runs/{rid}/log?offset=1e20", "offset"),
        ("runs/{rid}/log?offset=99999999999999999999", "offset"),
        ("runs/{rid}/log/follow?offset=1e20", "offset"),
        ("experiments?search=%E2%80%AEevil", "search"),
    ],
)
def test_each_bad_value_names_its_field(
    hub: Hub, finished: dict[str, Any], query: str, field: str
) -> None:
    answer = hub.call("alice", "GET", query.format(rid=finished["run"]["id"]))
    assert answer.status == 400, (query, answer.status, answer.body[:200])
    assert field in answer.json["errors"], answer.json


def test_body_limits_are_checked_before_parsing(hub: Hub) -> None:
    token = hub.token("alice")
    deep = raw("POST", f"{hub.api}/experiments", token, deep_json(100_000))
    assert deep.status == 400 and "body" in deep.json["errors"]
    huge = raw("POST", f"{hub.api}/experiments", token, b'{"name": "' + b"a" * (10 << 20) + b'"}')
    assert huge.status == 413 and huge.json["error"] == "BodyTooLarge"
    for data in (b"{", b'{"name": NaN}', b"[]"):
        answer = raw("POST", f"{hub.api}/experiments", token, data)
        assert answer.status == 400 and "body" in answer.json["errors"], data


def test_huge_limits_are_capped(hub: Hub, finished: dict[str, Any]) -> None:
    rid = finished["run"]["id"]
    assert hub.call("alice", "GET", "experiments?limit=1000000000000").status == 200
    chunk = hub.call("alice", "GET", f"runs/{rid}/log?limit=1000000000000").json
    assert "finished" in chunk["text"]
    end = hub.call("alice", "GET", f"runs/{rid}/log?offset=9223372036854775807").json
    assert end["text"] == ""


ID_METHODS: list[tuple[str, Any]] = [
    ("experiment_id", lambda lab, v: lab.get_experiment(v)),
    ("experiment_id", lambda lab, v: lab.update_experiment(v, name="x")),
    ("experiment_id", lambda lab, v: lab.clone_experiment(v)),
    ("experiment_id", lambda lab, v: lab.share_experiment(v)),
    ("experiment_id", lambda lab, v: lab.delete_experiment(v)),
    ("experiment_id", lambda lab, v: lab.run_experiment(v)),
    ("experiment_id", lambda lab, v: lab.runs(v)),
    ("run_id", lambda lab, v: lab.get_run(v)),
    ("run_id", lambda lab, v: lab.stop_run(v)),
    ("run_id", lambda lab, v: lab.read_log(v)),
    ("run_id", lambda lab, v: lab.results(v)),
    ("run_id", lambda lab, v: lab.result_file(v, "done.txt")),
    ("run_id", lambda lab, v: next(iter(lab.follow_log(v)))),
]


def test_remote_lab_refuses_bad_ids_as_lab_does(hub: Hub, finished: dict[str, Any]) -> None:
    lab = RemoteLab(url=hub.service_url(), token=hub.token("alice"))

    @FUZZ
    @given(value=bad_ids, index=st.integers(0, len(ID_METHODS) - 1))
    def check(value: Any, index: int) -> None:
        field, call = ID_METHODS[index]
        with pytest.raises(ValidationError) as info:
            call(lab, value)
        assert field in info.value.errors, info.value.errors

    check()
    for _field, call in ID_METHODS:  # in range but absent: the service answers, not the client
        with pytest.raises(NotFound):
            call(lab, 2**63 - 1)


def test_remote_lab_refuses_unknown_words_and_spoofed_text(
    hub: Hub, finished: dict[str, Any]
) -> None:
    lab = RemoteLab(url=hub.service_url(), token=hub.token("alice"))
    eid = finished["exp"]["id"]

    @FUZZ
    @given(word=unknown_words, text=spoofed_text())
    def check(word: str, text: str) -> None:
        for field, call in (
            ("scope", lambda: lab.experiments(scope=word)),
            ("status", lambda: lab.count_experiments(status=word)),
            ("sort", lambda: lab.experiments(sort=word)),
            ("name", lambda: lab.update_experiment(eid, name=text)),
            ("params.wait_file", lambda: lab.update_experiment(eid, params={"wait_file": text})),
        ):
            with pytest.raises(ValidationError) as info:
                call()
            assert field in info.value.errors, (field, info.value.errors)

    check()
    assert lab.get_experiment(eid).name == "fuzz target"


def _swap_for_link(folder: Path, target: Path) -> None:
    folder.rename(folder.with_name(folder.name + ".moved"))
    folder.symlink_to(target, target_is_directory=True)


def test_swapped_output_folders_serve_and_delete_nothing(hub: Hub, experiment: Any) -> None:
    exp = experiment("alice")
    run = hub.call("alice", "POST", f"experiments/{exp['id']}/run").json
    lab = RemoteLab(url=hub.service_url(), token=hub.token("alice"))
    assert lab.wait(run["id"], timeout=60).status == "completed"
    state = hub.root / "state"  # the hub's cookie secret lives here
    secret = (state / "jupyterhub_cookie_secret").read_bytes()
    _swap_for_link(Path(exp["output_path"]), state)
    for path in (
        f"runs/{run['id']}/file?path=jupyterhub_cookie_secret",
        f"runs/{run['id']}/results",
    ):
        answer = hub.call("alice", "GET", path)
        assert answer.status == 403, (path, answer.status)
        assert secret not in answer.body
    answer = hub.call("alice", "DELETE", f"experiments/{exp['id']}?remove_outputs=true")
    assert answer.status == 403 and answer.json["error"] == "PermissionDenied"
    assert (state / "jupyterhub_cookie_secret").read_bytes() == secret
    with pytest.raises(PermissionDenied):
        lab.result_file(run["id"], "jupyterhub_cookie_secret")


def test_one_error_path_maps_every_exception() -> None:
    cases = [
        (ValidationError.one("offset", "must be at most 9"), 400),
        (PermissionDenied("no"), 403),
        (NotFound("gone"), 404),
        (Conflict("busy"), 409),
        (wire.BodyTooLarge("big"), 413),
        (ServiceUnavailable("later"), 503),
    ]
    for exc, status in cases:
        answered, body = wire.error_answer(exc, 500, "Internal Server Error", None)
        assert answered == status and body["error"] == type(exc).__name__
    answered, body = wire.error_answer(RuntimeError("db password is hunter2"), 500, "x", "abc1")
    assert answered == 500
    assert body == {"error": "internal", "message": "internal error", "request_id": "abc1"}


def test_depth_is_counted_outside_strings_only() -> None:
    tricky = json.dumps({"a": [[1, {"b": ']]]\\"[[[{{{'}]], "c": "\\\\"}).encode()
    assert wire.nesting_depth(tricky) == 4
    assert wire.nesting_depth(b'["unterminated [[[[') == 1
    assert wire.nesting_depth(deep_json(100_000)) == 100_001


LEGITIMATE = {  # hostile-looking values that are fine where they are: no parameters changed,
    ("experiments", "params"): ({}, None),  # no description, a long one (up to 10,000)
    ("experiments", "description"): ("", "a" * 5000),
}
HOSTILE_VALUES: list[Any] = [[], {}, [[1]], 10**30, -(10**30), 1e308, None, "", "‮x", "a" * 5000]


def _plausible(name: str, hub: Hub, finished: dict[str, Any]) -> Any:
    """A well-formed value for a body field, so the hostile one is what reaches the Lab."""
    rid = finished["run"]["id"]
    values = {
        "name": "fuzz body",
        "input_path": str(hub.data / "frames"),
        "output_path": str(hub.data / "out" / "fuzz-body"),
        "params": {},
        "format": "csv",
        "run_ids": [rid, rid + 1],
        "cells": [1],
        "rejected": [],
        "password": "a-long-enough-password-9",
        "is_admin": False,
        "shared": False,
    }
    return values.get(name, "x")


def test_each_body_field_hostile_in_turn_is_refused(hub: Hub, finished: dict[str, Any]) -> None:
    """Bodies complete but for one hostile value, so every value check of every writing route
    is reached (a body missing fields is refused before the Lab sees it)."""
    eid, rid = finished["exp"]["id"], finished["run"]["id"]
    token = hub.token("alice")
    before = _stored(hub)
    accepted: list[tuple[str, str, str, str]] = []
    for method, path in _routes(eid, rid):
        if method not in ("POST", "PUT", "PATCH"):
            continue
        fields = _body_fields(method, path, eid, rid)
        for field in fields:
            for value in HOSTILE_VALUES:
                body = {f: _plausible(f, hub, finished) for f in fields} | {field: value}
                answer = raw(method, f"{hub.api}/{path}", token, json.dumps(body).encode())
                if answer.status < 400:
                    if value not in LEGITIMATE.get((path, field), ()):
                        accepted.append((method, path, field, repr(value)[:20]))
                    hub.call("alice", "DELETE", f"experiments/{answer.json['id']}")
                    continue
                refused(answer, f"{method} {path} {field}={str(value)[:20]}")
    assert accepted == [], accepted
    assert _stored(hub) == before


def _body_fields(method: str, path: str, eid: int, rid: int) -> list[str]:
    """The body fields the route's Lab method takes (its parameters less those in the path)."""
    import inspect

    from pico_nb.lab import Lab

    for pattern, methods in routes.ROUTES.items():
        concrete = pattern.replace(routes.PATH_ID.format("experiment_id"), str(eid))
        concrete = concrete.replace(routes.PATH_ID.format("run_id"), str(rid))
        concrete = concrete.replace(routes.PATH_ID.format("username"), "alice")
        if concrete == path and method in methods:
            fn = methods[method](Lab)
            skip = {"self", "experiment_id", "run_id", "username"}
            return [n for n in inspect.signature(fn).parameters if n not in skip]
    raise AssertionError(f"no route {method} {path}")
