"""The Lab contract: everything a front end may call, kept by the local `Lab` and the hub's
`RemoteLab` alike (tests/test_lab_contract.py checks both against it, signature by signature,
and runs one behaviour suite on each).

Front ends are written against this, so a dashboard, a notebook or the CLI works the same on a
laptop (records in SQLite, runs in local processes) and in a lab server's user server (every
call a request to the pico service). Records are the pydantic models of `pico_nb.schemas`;
errors are those of `pico_nb.contract.errors` on both sides.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from pico_nb.contract.spec import PipelineSpec
    from pico_nb.inputs import Scope, Sort, Status
    from pico_nb.schemas import (
        CellTable,
        Curation,
        ExperimentRecord,
        FrameInfo,
        LogChunk,
        LogLine,
        MachineRecord,
        NotificationSettings,
        QueueRecord,
        Results,
        RunComparison,
        RunRecord,
        Traces,
        UserRecord,
        WorkerRecord,
    )
    from pico_nb.settings import Settings


@runtime_checkable
class LabAPI(Protocol):
    """The lab as one member sees it; every method checks ownership and validates its input."""

    username: str
    settings: Settings
    spec: PipelineSpec

    @property
    def user(self) -> UserRecord: ...
    @property
    def is_admin(self) -> bool: ...
    @property
    def data_roots(self) -> list[Path]: ...

    # experiments
    def detect_frames(self, path: str) -> FrameInfo: ...
    def create_experiment(
        self,
        name: str,
        input_path: str,
        output_path: str,
        params: Mapping[str, Any] | None = None,
        description: str = "",
    ) -> ExperimentRecord: ...
    def get_experiment(self, experiment_id: int) -> ExperimentRecord: ...
    def experiments(
        self,
        status: Status | None = None,
        search: str | None = None,
        owner: str | None = None,
        limit: int = 50,
        offset: int = 0,
        *,
        scope: Scope = "visible",
        sort: Sort = "created",
        descending: bool = True,
    ) -> list[ExperimentRecord]: ...
    def count_experiments(
        self,
        status: Status | None = None,
        search: str | None = None,
        owner: str | None = None,
        *,
        scope: Scope = "visible",
    ) -> int: ...
    def update_experiment(self, experiment_id: int, **changes: Any) -> ExperimentRecord: ...
    def clone_experiment(
        self, experiment_id: int, name: str | None = None, **changes: Any
    ) -> ExperimentRecord: ...
    def delete_experiment(self, experiment_id: int, remove_outputs: bool = False) -> None: ...
    def share_experiment(self, experiment_id: int, shared: bool = True) -> ExperimentRecord: ...

    # runs and logs
    def run_experiment(self, experiment_id: int) -> RunRecord: ...
    def stop_run(self, run_id: int) -> RunRecord: ...
    def runs(self, experiment_id: int) -> list[RunRecord]: ...
    def get_run(self, run_id: int) -> RunRecord: ...
    def wait(self, run_id: int, timeout: float | None = None, poll: float = 0.2) -> RunRecord: ...
    def reconcile(self) -> list[int]: ...
    def queue(self) -> QueueRecord: ...
    def machines(self) -> list[MachineRecord]: ...
    def workers(self) -> list[WorkerRecord]: ...
    def read_log(self, run_id: int, offset: int = 0, limit: int = 1 << 20) -> LogChunk: ...
    def follow_log(
        self,
        run_id: int,
        offset: int = 0,
        from_tail: int | None = None,
        poll: float = 0.05,
        stop: Callable[[], bool] | None = None,
    ) -> Iterator[LogLine]: ...

    # results
    def results(self, run_id: int) -> Results: ...
    def result_file(self, run_id: int, path: str) -> bytes: ...
    def cells(self, run_id: int) -> CellTable: ...
    def traces(self, run_id: int, cells: list[int]) -> Traces: ...
    def cell_image(self, run_id: int, image: str = "mean") -> bytes: ...
    def curation(self, run_id: int) -> Curation: ...
    def set_curation(self, run_id: int, rejected: list[int]) -> Curation: ...
    def compare_runs(self, run_ids: list[int]) -> RunComparison: ...
    def overlay_image(self, run_a: int, run_b: int, image: str = "mean") -> bytes: ...
    def export(self, run_id: int, format: str, destination: str | None = None) -> str: ...

    # notifications and accounts
    def notification_settings(self) -> NotificationSettings: ...
    def set_notifications(
        self, email: str | None = None, webhook: str | None = None
    ) -> NotificationSettings: ...
    def users(self) -> list[UserRecord]: ...
    def add_user(
        self, username: str, password: str | None, is_admin: bool = False
    ) -> UserRecord: ...
    def set_password(self, username: str, password: str) -> None: ...
    def set_admin(self, username: str, is_admin: bool) -> UserRecord: ...
    def delete_user(self, username: str) -> None: ...
