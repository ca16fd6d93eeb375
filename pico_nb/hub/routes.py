"""The service's REST routes: which Lab method answers each URL and HTTP method.

Path parts named like a Lab parameter (``experiment_id``, ``run_id``, ``username``) are passed
as that parameter; query or body values fill the others (see :mod:`pico_nb.hub.wire`).
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import Any

from pico_nb.lab import Lab
from pico_nb.settings import Settings

Endpoint = Callable[[Lab], Callable[..., Any]]
PUBLIC_SETTINGS = (
    "home",
    "data_roots",
    "max_concurrent_runs",
    "max_runs_per_user",
    "gpus",
    "stop_grace_seconds",
    "heartbeat_seconds",
    "lost_after_seconds",
    "executor",
)
PATH_ID = r"(?P<{}>[^/]+)"
EXPERIMENT_PATH = "experiments/" + PATH_ID.format("experiment_id")
RUN_PATH = "runs/" + PATH_ID.format("run_id")
USER_PATH = "users/" + PATH_ID.format("username")

ROUTES: dict[str, dict[str, Endpoint]] = {
    "whoami": {"GET": lambda lab: lambda: lab.user},
    "settings": {"GET": lambda lab: lambda: public_settings(lab.settings)},
    "folders": {"GET": lambda lab: lambda: [str(p) for p in lab.data_roots]},
    "spec": {"GET": lambda lab: lab.spec.to_dict},
    "schema": {"GET": lambda lab: lab.spec.json_schema},
    "frames": {"GET": attrgetter("detect_frames")},
    "queue": {"GET": attrgetter("queue")},
    "machines": {"GET": attrgetter("machines")},
    "workers": {"GET": attrgetter("workers")},
    "reconcile": {"POST": attrgetter("reconcile")},
    "notifications": {
        "GET": attrgetter("notification_settings"),
        "PUT": attrgetter("set_notifications"),
    },
    "experiments": {"GET": attrgetter("experiments"), "POST": attrgetter("create_experiment")},
    "experiments/count": {"GET": attrgetter("count_experiments")},
    EXPERIMENT_PATH: {
        "GET": attrgetter("get_experiment"),
        "PATCH": attrgetter("update_experiment"),
        "DELETE": attrgetter("delete_experiment"),
    },
    EXPERIMENT_PATH + "/clone": {"POST": attrgetter("clone_experiment")},
    EXPERIMENT_PATH + "/share": {"POST": attrgetter("share_experiment")},
    EXPERIMENT_PATH + "/run": {"POST": attrgetter("run_experiment")},
    EXPERIMENT_PATH + "/runs": {"GET": attrgetter("runs")},
    RUN_PATH: {"GET": attrgetter("get_run")},
    RUN_PATH + "/stop": {"POST": attrgetter("stop_run")},
    RUN_PATH + "/log": {"GET": attrgetter("read_log")},
    RUN_PATH + "/results": {"GET": attrgetter("results")},
    RUN_PATH + "/file": {"GET": attrgetter("result_file")},
    RUN_PATH + "/cells": {"GET": attrgetter("cells")},
    RUN_PATH + "/traces": {"POST": attrgetter("traces")},
    RUN_PATH + "/image": {"GET": attrgetter("cell_image")},
    RUN_PATH + "/curation": {"GET": attrgetter("curation"), "PUT": attrgetter("set_curation")},
    RUN_PATH + "/export": {"POST": attrgetter("export")},
    "compare": {"POST": attrgetter("compare_runs")},
    "overlay": {"GET": attrgetter("overlay_image")},
    "users": {"GET": attrgetter("users"), "POST": attrgetter("add_user")},
    USER_PATH: {"DELETE": attrgetter("delete_user")},
    USER_PATH + "/password": {"PUT": attrgetter("set_password")},
    USER_PATH + "/admin": {"PUT": attrgetter("set_admin")},
}


def public_settings(settings: Settings) -> dict[str, Any]:
    """What clients may know of the configuration: never the database or broker URLs."""
    data = settings.model_dump(mode="json", include=set(PUBLIC_SETTINGS))
    data["data_roots"] = [str(p) for p in settings.effective_data_roots]
    return data
