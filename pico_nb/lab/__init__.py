"""Lab: every operation a user can do, authorized and validated; the one API all front ends use.

`Lab` is a façade over one mixin per service (experiments, runs and their logs, results,
accounts), each in its own module on top of `core.LabCore`, which holds what they share."""

from __future__ import annotations

from pico_nb.lab.accounts import AccountsMixin
from pico_nb.lab.core import current_username
from pico_nb.lab.experiments import ExperimentsMixin
from pico_nb.lab.jobs import JobsMixin
from pico_nb.lab.records import log_line
from pico_nb.lab.results import ResultsMixin
from pico_nb.lab.runs import RunsMixin

__all__ = ["Lab", "current_username", "log_line"]


class Lab(ExperimentsMixin, RunsMixin, ResultsMixin, AccountsMixin, JobsMixin):
    """The lab as one user sees it: their experiments, runs and logs."""
