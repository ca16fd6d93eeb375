"""Every Lab method refuses hostile input with a ValidationError naming the field, stores nothing,
and never reads or removes a file outside the member's folders (issue 12's findings)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pico_nb.contract.errors import NotFound, PermissionDenied, ValidationError
from pico_nb.contract.limits import MAX_INT64
from pico_nb.inputs import MAX_LOG_READ
from pico_nb.lab import Lab
from pico_nb.settings import Settings, load_settings

from cell_results import write_results
from fuzz_values import bad_counts, bad_ids, flag_like, huge_numbers, spoofed_text, unknown_words
from support import TEST_PIPELINE, write_frames

FUZZ = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _build(settings: Settings, root: Path) -> dict[str, Any]:
    """Alice with a completed run, Bob with private files, both on one SQLite lab."""
    alice, bob = Lab(user="alice", settings=settings), Lab(user="bob", settings=settings)
    frames = write_frames(root / "input")
    exp = alice.create_experiment("mine", str(frames), str(root / "alice" / "out" / "e1"))
    run = alice.run_experiment(exp.id)
    assert alice.wait(run.id, timeout=60).status == "completed"
    private = root / "bob" / "private"  # shaped like alice's folders, so a swap lines up
    run_folder = Path(run.output_path).name
    (private / "e1" / run_folder).mkdir(parents=True)
    (private / "e1" / run_folder / "done.txt").write_text("bob's secret")
    (private / "e1" / "done.txt").write_text("bob's secret")
    (private / "secret.txt").write_text("bob's secret")
    return {"alice": alice, "bob": bob, "exp": exp, "run": run, "private": private, "root": root}


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One world for the read-only fuzzing, built once: the fuzz suite stays about a minute."""
    root = tmp_path_factory.mktemp("fuzz")
    settings = load_settings(
        root / "home",
        data_roots=[str(root)],
        pipeline_spec=str(TEST_PIPELINE.with_suffix(".toml")),
        heartbeat_seconds=0.5,
    )
    return _build(settings, root)


@pytest.fixture
def world(settings_for: Callable[..., Settings], tmp_path: Path) -> dict[str, Any]:
    """A world of its own, for tests that swap folders for links."""
    return _build(settings_for(""), tmp_path)


def _count(lab: Lab) -> int:
    return lab.count_experiments(scope="mine")


def _refused(call: Callable[[], Any], field: str) -> ValidationError:
    """The call raises ValidationError naming the field (and only a ValidationError)."""
    with pytest.raises(ValidationError) as info:
        call()
    assert field in info.value.errors, info.value.errors
    return info.value


# ------------------------------------------------------------------ vocabularies


def test_an_unknown_scope_is_refused_not_no_filter(
    shared: dict[str, Any],
) -> None:
    bob: Lab = shared["bob"]
    _refused(lambda: bob.experiments(scope="foo"), "scope")
    _refused(lambda: bob.count_experiments(scope="foo"), "scope")
    assert bob.experiments() == [] and bob.count_experiments() == 0


@FUZZ
@given(word=unknown_words)
def test_every_vocabulary_refuses_unknown_words(shared: dict[str, Any], word: str) -> None:
    alice: Lab = shared["alice"]
    _refused(lambda: alice.experiments(scope=word), "scope")
    _refused(lambda: alice.count_experiments(scope=word), "scope")
    _refused(lambda: alice.experiments(status=word), "status")
    _refused(lambda: alice.count_experiments(status=word), "status")
    _refused(lambda: alice.experiments(sort=word), "sort")


def test_switches_take_booleans_only(shared: dict[str, Any]) -> None:
    alice, exp = shared["alice"], shared["exp"]
    _refused(lambda: alice.share_experiment(exp.id, shared="false"), "shared")
    _refused(lambda: alice.experiments(descending="no"), "descending")
    _refused(lambda: alice.delete_experiment(exp.id, remove_outputs="yes"), "remove_outputs")
    assert not alice.get_experiment(exp.id).shared


# ------------------------------------------------------------------------ bounds

ID_CALLS: list[tuple[str, str, Callable[[Lab, Any], Any]]] = [
    ("get_experiment", "experiment_id", lambda lab, v: lab.get_experiment(v)),
    ("update_experiment", "experiment_id", lambda lab, v: lab.update_experiment(v, name="x")),
    ("delete_experiment", "experiment_id", lambda lab, v: lab.delete_experiment(v)),
    ("clone_experiment", "experiment_id", lambda lab, v: lab.clone_experiment(v)),
    ("share_experiment", "experiment_id", lambda lab, v: lab.share_experiment(v)),
    ("run_experiment", "experiment_id", lambda lab, v: lab.run_experiment(v)),
    ("runs", "experiment_id", lambda lab, v: lab.runs(v)),
    ("get_run", "run_id", lambda lab, v: lab.get_run(v)),
    ("stop_run", "run_id", lambda lab, v: lab.stop_run(v)),
    ("read_log", "run_id", lambda lab, v: lab.read_log(v)),
    ("results", "run_id", lambda lab, v: lab.results(v)),
    ("result_file", "run_id", lambda lab, v: lab.result_file(v, "done.txt")),
    ("follow_log", "run_id", lambda lab, v: list(itertools.islice(lab.follow_log(v), 1))),
]


@pytest.mark.parametrize(("method", "field", "call"), ID_CALLS, ids=[c[0] for c in ID_CALLS])
def test_ids_out_of_range_are_refused_by_every_method(
    shared: dict[str, Any], method: str, field: str, call: Callable[[Lab, Any], Any]
) -> None:
    alice: Lab = shared["alice"]
    before = _count(alice)

    @FUZZ
    @given(value=bad_ids)
    def check(value: Any) -> None:
        _refused(lambda: call(alice, value), field)

    check()
    with pytest.raises(NotFound):  # the largest id is in range: it just does not exist
        call(alice, MAX_INT64)
    assert _count(alice) == before


@FUZZ
@given(offset=bad_counts)
def test_offsets_are_bounded(shared: dict[str, Any], offset: Any) -> None:
    alice, run = shared["alice"], shared["run"]
    _refused(lambda: alice.experiments(offset=offset), "offset")
    _refused(lambda: alice.read_log(run.id, offset=offset), "offset")
    _refused(lambda: alice.experiments(limit=offset), "limit")
    _refused(lambda: list(itertools.islice(alice.follow_log(run.id, offset=offset), 1)), "offset")


def test_huge_limits_are_capped_not_allocated(
    shared: dict[str, Any],
) -> None:
    alice, run = shared["alice"], shared["run"]
    assert [e.id for e in alice.experiments(limit=10**12)] == [shared["exp"].id]
    assert alice.experiments(offset=MAX_INT64) == []
    log = Path(alice.get_run(run.id).log_path)
    with log.open("ab") as handle:  # a log longer than one read may return
        handle.write(b"x" * (MAX_LOG_READ + 1000))
    chunk = alice.read_log(run.id, limit=10**12)
    assert chunk.next_offset - chunk.offset == MAX_LOG_READ
    assert alice.read_log(run.id, offset=MAX_INT64).text == ""


# -------------------------------------------------------------------- parameters


@FUZZ
@given(
    name=st.sampled_from(["lines", "exit_code", "flood", "tqdm_steps"]),
    value=st.one_of(
        huge_numbers,
        st.floats(allow_nan=True, allow_infinity=True).filter(
            lambda f: not f.is_integer() or abs(f) > 2**63
        ),
    ),
)
def test_numbers_beyond_bounds_are_refused_and_nothing_stored(
    shared: dict[str, Any], name: str, value: Any
) -> None:
    alice: Lab = shared["alice"]
    before = _count(alice)
    out = str(shared["root"] / "alice" / "out" / "huge")
    _refused(
        lambda: alice.create_experiment("n", str(shared["root"] / "input"), out, {name: value}),
        f"params.{name}",
    )
    _refused(
        lambda: alice.update_experiment(shared["exp"].id, params={name: value}), f"params.{name}"
    )
    assert _count(alice) == before
    assert alice.get_experiment(shared["exp"].id).params[name] == shared["exp"].params[name]


@FUZZ
@given(value=st.one_of(flag_like, spoofed_text()))
def test_text_parameters_refuse_flags_and_spoofing(shared: dict[str, Any], value: str) -> None:
    alice: Lab = shared["alice"]
    before = _count(alice)
    out = str(shared["root"] / "alice" / "out" / "flag")
    _refused(
        lambda: alice.create_experiment(
            "f", str(shared["root"] / "input"), out, {"wait_file": value}
        ),
        "params.wait_file",
    )
    assert _count(alice) == before


@FUZZ
@given(name=spoofed_text(), description=spoofed_text(keep_newlines=True))
def test_names_and_descriptions_refuse_control_and_bidi(
    shared: dict[str, Any], name: str, description: str
) -> None:
    alice: Lab = shared["alice"]
    exp = shared["exp"]
    out = str(shared["root"] / "alice" / "out" / "spoof")
    _refused(lambda: alice.create_experiment(name, str(shared["root"] / "input"), out), "name")
    _refused(lambda: alice.update_experiment(exp.id, description=description), "description")
    _refused(lambda: alice.clone_experiment(exp.id, name=name), "name")
    assert alice.get_experiment(exp.id).name == exp.name


def test_ten_megabyte_strings_are_refused(
    shared: dict[str, Any],
) -> None:
    alice: Lab = shared["alice"]
    big = "a" * (10 << 20)
    inp, out = str(shared["root"] / "input"), str(shared["root"] / "alice" / "out" / "big")
    _refused(lambda: alice.create_experiment(big, inp, out), "name")
    _refused(lambda: alice.create_experiment("b", inp, out, description=big), "description")
    _refused(lambda: alice.create_experiment("b", big, out), "input_path")
    _refused(lambda: alice.create_experiment("b", inp, out, {"wait_file": big}), "params.wait_file")
    _refused(lambda: alice.experiments(search=big), "search")
    _refused(lambda: alice.experiments(owner=big), "owner")
    with pytest.raises(ValidationError):
        alice.result_file(shared["run"].id, big)


@pytest.mark.parametrize(
    "path", ["{tmp}/input/../../..", "/etc", "{tmp}/../elsewhere", "relative/folder", "/"]
)
def test_paths_leaving_the_roots_are_refused(shared: dict[str, Any], path: str) -> None:
    alice: Lab = shared["alice"]
    path = path.format(tmp=shared["root"])
    _refused(lambda: alice.detect_frames(path), "input_path")
    _refused(
        lambda: alice.create_experiment("p", str(shared["root"] / "input"), path + "/out"),
        "output_path",
    )


# --------------------------------------------------- symlinks swapped after checks


def _swap_for_link(folder: Path, target: Path) -> None:
    """Replace a folder by a symbolic link, as a member could after the checks passed."""
    folder.rename(folder.with_name(folder.name + ".moved"))
    folder.symlink_to(target, target_is_directory=True)


def test_results_refuse_an_output_folder_swapped_for_a_link(world: dict[str, Any]) -> None:
    alice, run, private = world["alice"], world["run"], world["private"]
    output = Path(run.output_path)
    assert alice.result_file(run.id, "done.txt") == b"ok"
    _swap_for_link(output, private / "e1")
    with pytest.raises(PermissionDenied):
        alice.results(run.id)
    with pytest.raises(PermissionDenied):
        alice.result_file(run.id, "done.txt")


def test_cells_traces_images_and_exports_refuse_a_folder_swapped_for_a_link(
    world: dict[str, Any],
) -> None:
    alice, run, private = world["alice"], world["run"], world["private"]
    write_results(private / "e1" / Path(run.output_path).name, 3)  # bob's cells, lined up
    _swap_for_link(Path(run.output_path).parent, private / "e1")
    for call in (
        lambda: alice.cells(run.id),
        lambda: alice.traces(run.id, [1]),
        lambda: alice.cell_image(run.id),
        lambda: alice.export(run.id, "csv"),
    ):
        with pytest.raises(PermissionDenied):
            call()
    assert not (private / "e1" / "exports").exists()


def test_results_refuse_a_parent_folder_swapped_for_a_link(world: dict[str, Any]) -> None:
    alice, run, private = world["alice"], world["run"], world["private"]
    parent = Path(run.output_path).parent  # alice/out, holding e1
    _swap_for_link(parent, private)
    with pytest.raises(PermissionDenied):
        alice.result_file(run.id, "done.txt")
    with pytest.raises(PermissionDenied):
        alice.results(run.id)


@pytest.mark.parametrize("target", ["/etc/passwd", "{db}", "{private}/secret.txt"])
def test_a_file_swapped_for_a_link_is_not_served(world: dict[str, Any], target: str) -> None:
    alice, run, private = world["alice"], world["run"], world["private"]
    output = Path(run.output_path)
    target = target.format(db=alice.db.url.database, private=private)
    (output / "done.txt").unlink()
    (output / "done.txt").symlink_to(target)
    (output / "sub").symlink_to(private, target_is_directory=True)
    with pytest.raises((PermissionDenied, NotFound)):
        alice.result_file(run.id, "done.txt")
    with pytest.raises((PermissionDenied, NotFound)):
        alice.result_file(run.id, "sub/secret.txt")
    listed = {f.path for f in alice.results(run.id).files}
    assert "done.txt" not in listed and not any(p.startswith("sub") for p in listed)


def _tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in folder.rglob("*") if p.is_file()}


def test_delete_never_follows_a_swapped_output_folder(world: dict[str, Any]) -> None:
    alice, exp, private = world["alice"], world["exp"], world["private"]
    before = _tree(private)
    _swap_for_link(Path(exp.output_path), private / "e1")
    with pytest.raises(PermissionDenied):
        alice.delete_experiment(exp.id, remove_outputs=True)
    assert _tree(private) == before
    assert alice.get_experiment(exp.id).id == exp.id  # refused before anything changed


def test_delete_never_follows_a_swapped_parent_folder(world: dict[str, Any]) -> None:
    alice, exp, private = world["alice"], world["exp"], world["private"]
    before = _tree(private)
    _swap_for_link(Path(exp.output_path).parent, private)
    with pytest.raises(PermissionDenied):
        alice.delete_experiment(exp.id, remove_outputs=True)
    assert _tree(private) == before
    assert alice.get_experiment(exp.id).id == exp.id


def test_delete_unlinks_links_inside_the_outputs_without_following(world: dict[str, Any]) -> None:
    alice, exp, private = world["alice"], world["exp"], world["private"]
    output, run_folder = Path(exp.output_path), Path(world["run"].output_path)
    before = _tree(private)
    (run_folder / "theirs").symlink_to(private, target_is_directory=True)
    (run_folder / "secret").symlink_to(private / "secret.txt")
    alice.delete_experiment(exp.id, remove_outputs=True)
    assert not os.path.lexists(run_folder) and not os.path.lexists(output)
    assert _tree(private) == before


@FUZZ
@given(name=st.one_of(st.integers(), st.none(), st.just(""), st.text(min_size=201), spoofed_text()))
def test_account_names_that_are_no_names_are_refused(shared: dict[str, Any], name: Any) -> None:
    operator = Lab.operator(settings=shared["alice"].settings)
    before = len(operator.users())
    _refused(lambda: operator.set_admin(name, True), "username")
    _refused(lambda: operator.delete_user(name), "username")
    _refused(lambda: operator.add_user(name, "long-enough-password"), "username")
    assert len(operator.users()) == before


def test_the_largest_ids_and_offsets_reach_either_database(lab_for: Callable[..., Lab]) -> None:
    """2^63-1 is in range on SQLite and PostgreSQL alike: not found, never an overflow."""
    lab = lab_for("alice")
    with pytest.raises(NotFound):
        lab.get_experiment(MAX_INT64)
    with pytest.raises(NotFound):
        lab.get_run(MAX_INT64)
    assert lab.experiments(offset=MAX_INT64, limit=MAX_INT64) == []
