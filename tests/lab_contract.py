"""One behaviour suite for every implementation of the Lab contract (pico_nb.lab_api.LabAPI):
the local `Lab` runs it on SQLite, the hub's `RemoteLab` through a real lab server."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from pico_nb.contract.errors import NotFound, PermissionDenied, ValidationError
from pico_nb.lab_api import LabAPI
from pico_nb.schemas import (
    ExperimentRecord,
    LogChunk,
    MachineRecord,
    QueueRecord,
    RunRecord,
    WorkerRecord,
)


def contract_members() -> list[str]:
    """Every method and property the contract names."""
    return [n for n in vars(LabAPI) if not n.startswith("_")]


def signature_mismatches(implementation: type) -> list[str]:
    """Where an implementation's public surface differs from the contract: missing members,
    other parameter names, kinds or defaults, or another return annotation."""
    problems = []
    for name in contract_members():
        wanted = inspect.getattr_static(LabAPI, name)
        have = inspect.getattr_static(implementation, name, None)
        if have is None:
            problems.append(f"{name}: missing")
        elif isinstance(wanted, property):
            if not isinstance(have, property):
                problems.append(f"{name}: not a property")
        else:
            ours = inspect.signature(wanted)
            theirs = inspect.signature(getattr(implementation, name))
            shape = [(p.name, p.kind, p.default, p.annotation) for p in ours.parameters.values()]
            if shape != [
                (p.name, p.kind, p.default, p.annotation) for p in theirs.parameters.values()
            ]:
                problems.append(f"{name}{theirs} is not {name}{ours}")
            elif ours.return_annotation != theirs.return_annotation:
                problems.append(f"{name} returns {theirs.return_annotation}")
    return problems


def release(path: Path) -> None:
    """Let a fake pipeline waiting on this file finish."""
    path.write_text("go")


def scenario(lab: LabAPI, bob: LabAPI, frames: Path, out: Path, gate: Path) -> None:
    """A member's whole day through the contract alone: the same records and the same errors
    whichever side of the network the records are on."""
    assert isinstance(lab, LabAPI)
    assert lab.username == "alice" and not lab.is_admin and lab.user.username == "alice"
    assert lab.spec.name == "fake" and "lines" in lab.spec.defaults()
    assert lab.detect_frames(str(frames)).count >= 1
    with pytest.raises(ValidationError) as bad:
        lab.create_experiment("contract", str(frames), "/etc/out", params={"nope": 1})
    assert {"output_path", "params.nope"} <= set(bad.value.errors)
    exp = lab.create_experiment(
        "contract",
        str(frames),
        str(out / "contract"),
        params={"wait_file": str(gate), "tqdm_steps": 5},
    )
    assert isinstance(exp, ExperimentRecord) and exp.owner == "alice" and exp.status == "created"
    assert lab.get_experiment(exp.id) == exp
    assert exp.id in [e.id for e in lab.experiments(search="contract")]
    assert lab.count_experiments(search="contract") >= 1
    with pytest.raises(ValidationError) as bad:
        lab.experiments(scope="everything")  # type: ignore[arg-type]
    assert "scope" in bad.value.errors
    run = lab.run_experiment(exp.id)
    assert isinstance(run, RunRecord) and run.active and run.number == 1
    seen: list[str] = []
    for event in lab.follow_log(run.id):
        if event.line is not None:
            seen.append(event.line)
        if event.line == "waiting":
            release(gate)
    assert "finished" in seen and "waiting" in seen
    final = lab.wait(run.id, timeout=60)
    assert final.status == "completed" and final.exit_code == 0 and final.reason == "exit code 0"
    chunk = lab.read_log(run.id)
    assert isinstance(chunk, LogChunk) and "finished" in chunk.text and chunk.finished
    assert lab.read_log(run.id, offset=chunk.next_offset).text == ""
    assert lab.result_file(run.id, "done.txt") == b"ok"
    assert "done.txt" in {f.path for f in lab.results(run.id).files}
    assert lab.curation(run.id).rejected == []
    with pytest.raises(NotFound):  # the test pipeline wrote no cells
        lab.cells(run.id)
    assert [r.id for r in lab.runs(exp.id)] == [run.id] and lab.get_run(run.id) == final
    with pytest.raises(ValidationError) as bad:
        lab.export(run.id, "pdf")
    assert "format" in bad.value.errors
    clone = lab.clone_experiment(exp.id, name="contract copy", output_path=str(out / "copy"))
    assert clone.parent_id == exp.id and clone.params == exp.params
    assert lab.share_experiment(clone.id).shared
    assert lab.update_experiment(clone.id, description="edited").description == "edited"
    with pytest.raises(PermissionDenied):
        bob.get_experiment(exp.id)
    with pytest.raises(PermissionDenied):
        bob.update_experiment(clone.id, name="mine now")  # shared means read-only
    assert bob.get_experiment(clone.id).shared
    lab.delete_experiment(clone.id)
    with pytest.raises(NotFound):
        lab.get_experiment(clone.id)
    with pytest.raises(NotFound):
        lab.get_run(10**9)
    with pytest.raises(PermissionDenied):
        lab.users()
    assert lab.notification_settings().email is None
    queue = lab.queue()
    assert isinstance(queue, QueueRecord) and queue.slots >= 1 and queue.queued == 0
    machines = lab.machines()  # where runs run: this host, each Celery worker, Slurm nodes
    assert machines and all(isinstance(m, MachineRecord) and m.cpus for m in machines)
    if lab.settings.executor == "local":
        (host,) = machines
        assert (host.kind, host.state) == ("host", "online")
        assert host.memory_total_mb and host.runs == []
    elif lab.settings.executor == "celery":
        assert {m.kind for m in machines} == {"worker"}
        assert all(m.state == "online" and m.slots for m in machines)
    else:  # Slurm: the partition's nodes, as Slurm describes them
        assert {m.kind for m in machines} == {"node"} and all(m.state for m in machines)
    assert all(isinstance(w, WorkerRecord) for w in lab.workers())  # none without Celery
