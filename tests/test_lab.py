"""The Lab API on SQLite and PostgreSQL: records, validation, and who may do what."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pico_nb.contract.errors import Conflict, NotFound, PermissionDenied, ValidationError
from pico_nb.lab import Lab

from support import write_frames

LabFor = Callable[..., Lab]


@pytest.fixture
def alice(lab_for: LabFor) -> Lab:
    return lab_for("alice", pipeline_spec=None)


@pytest.fixture
def bob(lab_for: LabFor) -> Lab:
    return lab_for("bob", pipeline_spec=None)


@pytest.fixture
def carol(lab_for: LabFor) -> Lab:
    lab = lab_for("carol", pipeline_spec=None)
    Lab.operator(settings=lab.settings).set_admin("carol", True)
    return lab


def make(lab: Lab, frames: Path, tmp_path: Path, name: str = "exp", **kw: object):
    out = tmp_path / "out" / f"{lab.username}-{name}"
    return lab.create_experiment(name, str(frames), str(out), **kw)


def test_create_get_and_list(alice: Lab, frames: Path, tmp_path: Path) -> None:
    exp = make(alice, frames, tmp_path, params={"fr": "20"}, description="first try")
    assert exp.owner == "alice" and exp.status == "created" and exp.run_count == 0
    assert exp.params["fr"] == 20 and exp.params["crop_parameter"] == [0, 0, 0, 0]
    assert exp.created_at.tzinfo is not None
    assert alice.get_experiment(exp.id) == exp
    second = make(alice, frames, tmp_path, name="second")
    assert [e.id for e in alice.experiments()] == [second.id, exp.id]  # newest first
    assert [e.id for e in alice.experiments(search="FIRST")] == [exp.id]
    assert [e.id for e in alice.experiments(status="created", limit=1, offset=1)] == [exp.id]
    assert alice.count_experiments() == 2
    assert [e.name for e in alice.experiments(sort="name", descending=False)] == ["exp", "second"]


def test_html_and_wildcards_are_stored_as_text(alice: Lab, frames: Path, tmp_path: Path) -> None:
    name = "<script>alert('x')</script> 100%_done"
    exp = make(alice, frames, tmp_path, name=name)
    assert alice.get_experiment(exp.id).name == name
    make(alice, frames, tmp_path, name="100 percent")
    assert [e.id for e in alice.experiments(search="%_")] == [exp.id]


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("name", "", "must not be empty"),
        ("name", "x" * 201, "at most 200 characters"),
        ("name", "a\x07b", "control characters"),
        ("description", "bad\x00", "control characters"),
        ("input_path", "/definitely/not/here", "data roots"),
        ("input_path", "relative/path", "absolute path"),
        ("params.fr", 0, "at least 1"),
        ("params.nope", 1, "unknown parameter"),
    ],
)
def test_bad_input_names_the_field_and_stores_nothing(
    alice: Lab, frames: Path, tmp_path: Path, field: str, value: object, rule: str
) -> None:
    args: dict[str, object] = {
        "name": "ok",
        "input_path": str(frames),
        "output_path": str(tmp_path / "out"),
        "description": "",
        "params": {},
    }
    if field.startswith("params."):
        args["params"] = {field.split(".", 1)[1]: value}
    else:
        args[field] = value
    with pytest.raises(ValidationError) as info:
        alice.create_experiment(**args)  # type: ignore[arg-type]
    assert rule in info.value.errors[field]
    assert alice.count_experiments() == 0


def test_folder_rules(alice: Lab, frames: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = {
        "input_path": [
            (str(empty), "contains no frame_N.jpg images or TIFF files"),
            (str(tmp_path / "missing"), "not an existing folder"),
            (str(frames / ".." / ".." / ".." / ".."), "data roots"),
            (str(frames / "frame_0.jpg"), "not an existing folder"),
        ],
        "output_path": [
            (str(frames / "results"), "inside it"),
            (str(frames), "input folder"),
            ("/etc/pico", "data roots"),
            (str(tmp_path), "data root itself"),
        ],
    }
    for field, bad in cases.items():
        for value, rule in bad:
            args = {"input_path": str(frames), "output_path": str(tmp_path / "out")}
            args[field] = value
            with pytest.raises(ValidationError) as info:
                alice.create_experiment("x", **args)
            assert rule in info.value.errors[field], (field, value)
    assert alice.count_experiments() == 0


def test_the_data_homes_private_folders_are_never_experiment_folders(
    settings_for: Callable[..., Any], frames: Path
) -> None:
    settings = settings_for()
    lab = Lab(user="alice", settings=settings)
    home = settings.home.resolve()
    for output in (home / "logs" / "alice", home / "hub", home / "spool" / "x", home):
        with pytest.raises(ValidationError) as info:
            lab.create_experiment("x", str(frames), str(output))
        assert "private folder" in info.value.errors["output_path"], output
    lab.create_experiment("demo", str(frames), str(home / "demo" / "results"))  # the demo's place
    member_lab = Lab(user="alice", settings=settings.model_copy(update={"member_accounts": True}))
    with pytest.raises(ValidationError) as info:
        member_lab.create_experiment("x", str(frames), str(home / "demo" / "results"))
    assert "private folder" in info.value.errors["output_path"]
    assert lab.count_experiments() == 1


def test_every_bad_field_at_once(alice: Lab, tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as info:
        alice.create_experiment("", "/nope", "/nope2", params={"fr": "x"})
    assert {"name", "input_path", "output_path", "params.fr"} <= set(info.value.errors)


def test_detect_frames(alice: Lab, tmp_path: Path) -> None:
    folder = write_frames(tmp_path / "many", count=12, size=(20, 30))
    info = alice.detect_frames(str(folder))
    assert (info.kind, info.count, info.first, info.width, info.height) == (
        "jpeg sequence",
        12,
        "frame_0.jpg",
        30,
        20,
    )
    import numpy as np
    import tifffile

    stack = tmp_path / "stack"
    stack.mkdir()
    tifffile.imwrite(stack / "movie.tif", np.zeros((7, 8, 9), dtype=np.uint16))
    info = alice.detect_frames(str(stack))
    assert (info.kind, info.count, info.width, info.height) == ("tiff stack", 7, 9, 8)


def test_update_merges_params_and_validates(alice: Lab, frames: Path, tmp_path: Path) -> None:
    exp = make(alice, frames, tmp_path, params={"fr": 20})
    updated = alice.update_experiment(exp.id, name="renamed", params={"pw_rigid": "true"})
    assert updated.name == "renamed"
    assert updated.params["fr"] == 20 and updated.params["pw_rigid"] is True
    assert updated.updated_at > exp.updated_at
    with pytest.raises(ValidationError) as info:
        alice.update_experiment(exp.id, name="", params={"fr": -3})
    assert {"name", "params.fr"} <= set(info.value.errors)
    with pytest.raises(ValidationError):
        alice.update_experiment(exp.id, owner="bob")
    assert alice.get_experiment(exp.id) == updated


def test_clone_records_its_parent(alice: Lab, frames: Path, tmp_path: Path) -> None:
    exp = make(alice, frames, tmp_path, params={"fr": 20})
    clone = alice.clone_experiment(exp.id, params={"minArea": 30})
    assert clone.parent_id == exp.id and clone.name == "exp (copy)"
    assert clone.params["fr"] == 20 and clone.params["minArea"] == 30
    named = alice.clone_experiment(exp.id, name="variant")
    assert named.name == "variant"


def test_delete_hides_and_removes_outputs_only_when_asked(
    alice: Lab, frames: Path, tmp_path: Path
) -> None:
    exp = make(alice, frames, tmp_path)
    out = Path(exp.output_path)
    out.mkdir(parents=True)
    (out / "result.txt").write_text("r")
    alice.delete_experiment(exp.id)
    assert out.exists()
    with pytest.raises(NotFound):
        alice.get_experiment(exp.id)
    assert alice.count_experiments() == 0
    other = make(alice, frames, tmp_path, name="other")
    Path(other.output_path).mkdir(parents=True)
    alice.delete_experiment(other.id, remove_outputs=True)
    assert not Path(other.output_path).exists()
    assert frames.exists()


def test_missing_ids_are_not_found(alice: Lab) -> None:
    for call in (
        lambda: alice.get_experiment(999),
        lambda: alice.update_experiment(999, name="x"),
        lambda: alice.delete_experiment(999),
        lambda: alice.get_run(999),
        lambda: alice.stop_run(999),
        lambda: alice.runs(999),
    ):
        with pytest.raises(NotFound):
            call()
    with pytest.raises(ValidationError):
        alice.get_experiment("1; drop table")  # type: ignore[arg-type]


def test_other_users_are_refused_everything(
    alice: Lab, bob: Lab, frames: Path, tmp_path: Path
) -> None:
    exp = make(alice, frames, tmp_path)
    refused = {
        "get": lambda: bob.get_experiment(exp.id),
        "update": lambda: bob.update_experiment(exp.id, name="mine now"),
        "delete": lambda: bob.delete_experiment(exp.id),
        "share": lambda: bob.share_experiment(exp.id),
        "clone": lambda: bob.clone_experiment(exp.id),
        "run": lambda: bob.run_experiment(exp.id),
        "runs": lambda: bob.runs(exp.id),
    }
    for action, call in refused.items():
        with pytest.raises(PermissionDenied):
            call()
            pytest.fail(f"bob could {action}")
    assert bob.experiments() == [] and bob.count_experiments() == 0
    with pytest.raises(PermissionDenied):
        bob.experiments(scope="all")
    assert alice.get_experiment(exp.id).name == "exp"


def test_shared_experiments_are_read_only(
    alice: Lab, bob: Lab, frames: Path, tmp_path: Path
) -> None:
    exp = make(alice, frames, tmp_path)
    alice.share_experiment(exp.id)
    assert bob.get_experiment(exp.id).shared
    assert [e.id for e in bob.experiments(scope="shared")] == [exp.id]
    assert bob.experiments(scope="mine") == []
    assert bob.runs(exp.id) == []
    for call in (
        lambda: bob.update_experiment(exp.id, name="x"),
        lambda: bob.delete_experiment(exp.id),
        lambda: bob.run_experiment(exp.id),
        lambda: bob.share_experiment(exp.id, shared=False),
    ):
        with pytest.raises(PermissionDenied, match="clone it"):
            call()
    clone = bob.clone_experiment(exp.id, output_path=str(tmp_path / "out" / "bobs"))
    assert clone.owner == "bob" and clone.parent_id == exp.id
    alice.share_experiment(exp.id, shared=False)
    with pytest.raises(PermissionDenied):
        bob.get_experiment(exp.id)


def test_admin_sees_and_acts_on_all(
    alice: Lab, bob: Lab, carol: Lab, frames: Path, tmp_path: Path
) -> None:
    a = make(alice, frames, tmp_path, name="a")
    b = make(bob, frames, tmp_path, name="b")
    assert {e.id for e in carol.experiments()} == {a.id, b.id}
    assert {e.id for e in carol.experiments(scope="all", owner="bob")} == {b.id}
    assert carol.update_experiment(a.id, description="checked").description == "checked"
    carol.delete_experiment(b.id)
    assert bob.experiments() == []


def test_listings_of_one_shape_show_each_user_their_own(
    alice: Lab, bob: Lab, carol: Lab, frames: Path, tmp_path: Path
) -> None:
    """The listing's statements are built once per filter shape and shared by every user:
    whoever listed first, each user still gets exactly the rows they may see."""
    a = make(alice, frames, tmp_path, name="shape a")
    b = make(bob, frames, tmp_path, name="shape b")
    filters: list[dict[str, Any]] = [
        {},
        {"scope": "mine"},
        {"search": "shape"},
        {"status": "created", "search": "shape", "owner": "alice"},
        {"status": "created", "search": "shape", "owner": "bob"},
    ]
    for _ in range(2):  # the second round reuses every statement the first one built
        for given in filters:
            owner = given.get("owner")
            mine = {"alice": {a.id}, "bob": {b.id}}
            for lab in (alice, bob):
                expected = mine[lab.username] if owner in (None, lab.username) else set()
                assert {e.id for e in lab.experiments(**given)} == expected, given
                assert lab.count_experiments(**given) == len(expected), given
            expected = {a.id, b.id} if owner is None else mine[owner]
            if given.get("scope") == "mine":
                expected = set()  # carol, the admin, owns none
            assert {e.id for e in carol.experiments(**given)} == expected, given
    assert {e.id for e in carol.experiments(scope="all")} == {a.id, b.id}


def test_accounts_need_an_admin(alice: Lab, carol: Lab) -> None:
    with pytest.raises(PermissionDenied):
        alice.add_user("dave", "long enough password")
    with pytest.raises(PermissionDenied):
        alice.users()
    with pytest.raises(PermissionDenied):
        alice.set_password("carol", "another long password")
    user = carol.add_user("dave", "correct horse battery")
    assert user.has_password and not user.is_admin
    assert carol.verify_password("dave", "correct horse battery")
    assert not carol.verify_password("dave", "wrong password!")
    assert not carol.verify_password("nobody", "correct horse battery")
    with pytest.raises(ValidationError, match="at least 10"):
        carol.add_user("eve", "short")
    with pytest.raises(ValidationError, match="username"):
        carol.add_user("evelyn1234", "EVELYN1234")
    with pytest.raises(Conflict):
        carol.add_user("dave", "correct horse battery")
    alice.set_password("alice", "alice's own long one")
    assert alice.verify_password("alice", "alice's own long one")
    assert {u.username for u in carol.users()} >= {"alice", "carol", "dave"}
    carol.delete_user("dave")
    assert not carol.verify_password("dave", "correct horse battery")


def test_wrongly_shaped_values_are_validation_errors(
    alice: Lab, frames: Path, tmp_path: Path
) -> None:
    with pytest.raises(ValidationError) as info:
        alice.create_experiment("x", str(frames), str(tmp_path / "o"), params=[1, 2])  # type: ignore[arg-type]
    assert "params" in info.value.errors
    exp = make(alice, frames, tmp_path)
    with pytest.raises(ValidationError, match="params"):
        alice.update_experiment(exp.id, params="fr=3")
    for call in (
        lambda: alice.experiments(limit="lots"),  # type: ignore[arg-type]
        lambda: alice.experiments(offset=-1),
        lambda: alice.experiments(sort="owner; drop"),
        lambda: alice.experiments(status="exploded"),
    ):
        with pytest.raises(ValidationError):
            call()
    assert alice.count_experiments() == 1


def test_per_user_data_roots(lab_for: LabFor, tmp_path: Path) -> None:
    roots = [str(tmp_path / "users" / "{user}")]
    alice = lab_for("alice", pipeline_spec=None, data_roots=roots)
    mine = write_frames(tmp_path / "users" / "alice" / "movie")
    bobs = write_frames(tmp_path / "users" / "bob" / "movie")
    out = tmp_path / "users" / "alice" / "out"
    assert alice.create_experiment("ok", str(mine), str(out)).input_path == str(mine)
    with pytest.raises(ValidationError) as info:
        alice.create_experiment("theirs", str(bobs), str(out))
    assert "data roots" in info.value.errors["input_path"]
    assert str(tmp_path / "users" / "alice") in info.value.errors["input_path"]


def test_a_gap_in_the_frames_is_refused_at_once(alice: Lab, tmp_path: Path) -> None:
    folder = write_frames(tmp_path / "gappy", count=4)
    (folder / "frame_2.jpg").unlink()
    with pytest.raises(ValidationError) as info:
        alice.detect_frames(str(folder))
    assert "frame_2.jpg: frame 2 is missing" in info.value.errors["input_path"]
    with pytest.raises(ValidationError) as info:
        alice.create_experiment("gap", str(folder), str(tmp_path / "out"))
    assert "frame 2 is missing" in info.value.errors["input_path"]
