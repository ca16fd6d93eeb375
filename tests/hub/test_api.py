"""The pico service's REST API through the real hub: identity, isolation, bad input, RemoteLab."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import pytest

from pico_nb.contract.errors import PermissionDenied
from pico_nb.hub.client import RemoteLab

from lab_contract import release, scenario
from lab_server import Hub, http


def test_whoami_and_no_token(hub: Hub) -> None:
    assert hub.call("alice", "GET", "whoami").json["username"] == "alice"
    assert hub.call("carol", "GET", "whoami").json["is_admin"] is True
    anonymous = http("POST", f"{hub.api}/experiments", body={})
    assert anonymous.status in (401, 403)
    assert "Traceback" not in anonymous.body.decode()
    wrong = http("GET", f"{hub.api}/experiments", token="not-a-token")
    assert wrong.status in (401, 403)


def test_spec_and_schema(hub: Hub) -> None:
    spec = hub.call("alice", "GET", "spec").json
    assert spec["name"] == "fake"
    schema = hub.call("alice", "GET", "schema").json
    assert schema["additionalProperties"] is False and "lines" in schema["properties"]
    public = hub.call("alice", "GET", "settings").json
    assert "database_url" not in public and "broker_url" not in public


def test_isolation(hub: Hub, experiment: Any) -> None:
    gate = hub.gate()
    mine = experiment("alice", wait_file=str(gate))
    run = hub.call("alice", "POST", f"experiments/{mine['id']}/run").json
    theirs = experiment("bob")
    eid, rid = mine["id"], run["id"]
    refused = [
        ("GET", f"experiments/{eid}", None),
        ("PATCH", f"experiments/{eid}", {"name": "taken"}),
        ("DELETE", f"experiments/{eid}", None),
        ("POST", f"experiments/{eid}/run", None),
        ("POST", f"experiments/{eid}/clone", {}),
        ("POST", f"experiments/{eid}/share", {"shared": True}),
        ("GET", f"experiments/{eid}/runs", None),
        ("GET", f"runs/{rid}", None),
        ("POST", f"runs/{rid}/stop", None),
        ("GET", f"runs/{rid}/log", None),
        ("GET", f"runs/{rid}/log/download", None),
        ("GET", f"runs/{rid}/log/follow", None),
        ("GET", f"runs/{rid}/results", None),
        ("GET", f"runs/{rid}/file?path=done.txt", None),
        ("GET", f"runs/{rid}/cells", None),
        ("POST", f"runs/{rid}/traces", {"cells": [1]}),
        ("GET", f"runs/{rid}/image", None),
        ("GET", f"runs/{rid}/curation", None),
        ("PUT", f"runs/{rid}/curation", {"rejected": []}),
        ("POST", f"runs/{rid}/export", {"format": "csv"}),
        ("POST", "compare", {"run_ids": [rid, rid + 10_000]}),
        ("GET", f"overlay?run_a={rid}&run_b={rid}", None),
    ]
    for method, path, body in refused:
        answer = hub.call("bob", method, path, body)
        assert answer.status == 403, (method, path, answer.status)
        assert answer.json["error"] == "PermissionDenied"
    listed = hub.call("bob", "GET", "experiments?limit=1000").json
    assert theirs["id"] in {e["id"] for e in listed}
    assert all(e["owner"] == "bob" for e in listed)
    assert hub.call("bob", "GET", "experiments?scope=all").status == 403
    assert hub.call("bob", "GET", "experiments?owner=alice").json == []
    for n in range(1, max(eid, theirs["id"]) + 3):
        status = hub.call("bob", "GET", f"experiments/{n}").status
        assert status in (403, 404) if n != theirs["id"] else status == 200
    for n in range(1, rid + 3):
        assert hub.call("bob", "GET", f"runs/{n}").status in (403, 404)
    everything = {e["id"] for e in hub.call("carol", "GET", "experiments?limit=1000").json}
    assert {eid, theirs["id"]} <= everything
    assert hub.call("carol", "GET", f"runs/{rid}").status == 200
    # nothing bob tried changed alice's experiment or stopped her run
    assert hub.call("alice", "GET", f"experiments/{eid}").json["name"] == mine["name"]
    assert hub.call("alice", "GET", f"runs/{rid}").json["status"] in ("queued", "running")
    release(gate)
    final = RemoteLab(url=hub.service_url(), token=hub.token("alice")).wait(rid, timeout=60)
    assert final.status == "completed"


BAD_CREATE = [
    ({"name": 12}, "name"),
    ({"name": "x" * 201}, "name"),
    ({"name": "two\nlines"}, "name"),
    ({"params": {"lines": "many"}}, "params.lines"),
    ({"params": {"no_such_flag": 1}}, "params.no_such_flag"),
    ({"params": ["lines"]}, "params"),
    ({"colour": "red"}, "colour"),
    ({"input_path": "{data}/frames/../../../../etc"}, "input_path"),
    ({"input_path": "/etc"}, "input_path"),
    ({"input_path": 7}, "input_path"),
    ({"output_path": "/tmp/pico-outside-the-roots"}, "output_path"),
    ({"output_path": "{data}/../escape"}, "output_path"),
    ({"output_path": "{data}/frames/inside"}, "output_path"),
]


def _body(hub: Hub, change: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "good",
        "input_path": str(hub.data / "frames"),
        "output_path": str(hub.data / "out" / "bad-input"),
        "params": {},
    }
    body.update(change)
    for key in ("input_path", "output_path"):
        if isinstance(body[key], str):
            body[key] = body[key].replace("{data}", str(hub.data))
    return body


@pytest.mark.parametrize(("change", "field"), BAD_CREATE)
def test_bad_input_is_refused_with_its_field(hub: Hub, change: dict[str, Any], field: str) -> None:
    before = hub.call("alice", "GET", "experiments/count?scope=mine").json
    answer = hub.call("alice", "POST", "experiments", _body(hub, change))
    assert answer.status == 400, answer.body
    assert field in answer.json["errors"], answer.json
    assert "Traceback" not in answer.body.decode()
    assert hub.call("alice", "GET", "experiments/count?scope=mine").json == before


def test_bad_requests(hub: Hub, experiment: Any) -> None:
    exp = experiment("alice")
    cases = [
        ("GET", "experiments/abc", None, "experiment_id"),
        ("GET", "experiments/-1", None, "experiment_id"),
        ("GET", "experiments?limit=lots", None, "limit"),
        ("GET", "experiments?sort=evil", None, "sort"),
        ("GET", "experiments?bogus=1", None, "bogus"),
        ("PATCH", f"experiments/{exp['id']}", {"owner": "bob"}, "owner"),
        ("PATCH", f"experiments/{exp['id']}", {"name": "<b>" * 100}, "name"),
        ("POST", f"experiments/{exp['id']}/share", {"shared": "false"}, "shared"),
        ("POST", "experiments", {"name": "no folders"}, "input_path"),
        ("GET", "runs/1/log?offset=-5", None, "offset"),
    ]
    for method, path, body, field in cases:
        answer = hub.call("alice", method, path, body)
        assert answer.status == 400, (method, path, answer.body)
        assert field in answer.json["errors"], (path, answer.json)
    raw = http("POST", f"{hub.api}/experiments", hub.token("alice"), body=None)
    assert raw.status == 400
    assert hub.call("alice", "GET", f"experiments/{exp['id']}").json["name"] == exp["name"]
    assert hub.call("alice", "GET", "experiments/999999").status == 404


def test_html_in_names_is_stored_as_text(hub: Hub, experiment: Any) -> None:
    name = '<img src=x onerror="alert(1)"> & <b>bold</b>'
    body = _body(hub, {"name": name, "output_path": str(hub.data / "out" / "html")})
    answer = hub.call("alice", "POST", "experiments", body)
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("application/json")
    assert answer.json["name"] == name
    assert hub.call("alice", "GET", f"experiments/{answer.json['id']}").json["name"] == name


def test_remote_lab_keeps_the_lab_contract(hub: Hub, tmp_path: Path) -> None:
    lab = RemoteLab(url=hub.service_url(), token=hub.token("alice"))
    bob = RemoteLab(url=hub.service_url(), token=hub.token("bob"))
    scenario(lab, bob, hub.frames, hub.out("alice") / "contract", tmp_path / "gate")
    with pytest.raises(PermissionDenied):  # a token speaks for its own member only
        RemoteLab(user="bob", url=hub.service_url(), token=hub.token("alice"))
    assert lab.queue().slots == 4
    assert lab.settings.max_concurrent_runs == 4 and lab.settings.data_roots == [hub.data]


def test_follow_is_live(hub: Hub) -> None:
    """p95 from a line landing in the log to the client yielding it stays under 500 ms."""
    lab = RemoteLab(url=hub.service_url(), token=hub.token("alice"))
    gates = [hub.gate() for _ in range(6)]
    exp = lab.create_experiment(
        "live", str(hub.frames), str(hub.out("alice") / "live"), params={"lines": 0}
    )
    # the fake pipeline prints "waiting" then blocks; each run measures one print-to-yield
    delays: list[float] = []
    for gate in gates:
        lab.update_experiment(exp.id, params={"wait_file": str(gate)})
        run = lab.run_experiment(exp.id)
        released = 0.0
        for event in lab.follow_log(run.id):
            if event.line == "waiting":
                released = time.monotonic()
                release(gate)
            elif event.line == "finished":
                delays.append(time.monotonic() - released)
        lab.wait(run.id, timeout=30)
    assert statistics.quantiles(delays, n=20)[-1] < 0.5, delays
