"""One settings object: built-in defaults < pico_nb.toml < PICO_NB_* environment variables."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic import ValidationError as PydanticError

from pico_nb.errors import ValidationError

ENV_PREFIX = "PICO_NB_"
MEMBER_DATA_ROOT = Path("/srv/pico-data/{user}")


def default_home() -> Path:
    """The embedded default's data home, following the XDG convention."""
    env = os.environ.get(ENV_PREFIX + "HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "pico-nb"


class Settings(BaseModel):
    """Everything an operator can configure; each field documents its default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    home: Path = Field(description="Data home: database, logs, demo data. $PICO_NB_HOME.")
    database_url: str = Field(
        "", description="SQLAlchemy URL; empty means SQLite at <home>/pico-nb.sqlite."
    )
    data_roots: list[Path] = Field(
        default_factory=list,
        description="Folders experiments may read from and write to; `{user}` stands for the "
        "acting user's name; empty = the OS user's home + the data home.",
    )
    pipeline_spec: Path | None = Field(
        None, description="TOML/JSON file defining a lab's own PICO command and parameters."
    )
    max_concurrent_runs: int = Field(1, ge=1, description="Runs executing at once on this host.")
    max_runs_per_user: int | None = Field(
        None, ge=1, description="Running runs one user may hold at once; empty = no cap."
    )
    max_streams_per_user: int = Field(
        20, ge=1, description="Live logs one member may follow at once on the lab server."
    )
    service_processes: int = Field(
        1, ge=1, le=64, description="Processes of the lab server's pico service, on one port."
    )
    gpus: list[str] = Field(
        default_factory=list, description="GPU ids handed out one per run as CUDA_VISIBLE_DEVICES."
    )
    stop_grace_seconds: float = Field(
        10.0, gt=0, description="Seconds between SIGTERM and SIGKILL when a run is stopped."
    )
    heartbeat_seconds: float = Field(
        2.0, gt=0, description="How often a supervisor reports that its run is alive."
    )
    lost_after_seconds: float = Field(
        30.0, gt=0, description="Heartbeat age after which a run whose process is gone is lost."
    )
    db_outage_seconds: float = Field(
        120.0,
        gt=0,
        description="How long a supervisor rides out a database outage, its run going on, "
        "before it stops the run and records why.",
    )
    executor: Literal["local", "celery", "slurm"] = Field(
        "local",
        description="local = detached processes here; celery = workers via a broker; "
        "slurm = one batch job per run on the lab's cluster (this machine a submit host).",
    )
    slurm_partition: str = Field(
        "", description="Slurm partition runs go to (--partition); empty = the cluster's default."
    )
    slurm_account: str = Field(
        "", description="Slurm account runs are charged to (--account); empty = the default."
    )
    slurm_qos: str = Field("", description="Slurm QOS of runs (--qos); empty = the default.")
    slurm_time_limit: str = Field(
        "",
        pattern=r"^$|^(\d+-)?\d+(:\d\d){0,2}$",
        description="Time limit of a run (--time, e.g. 2:00:00 or 1-00:00:00); empty = the "
        "partition's.",
    )
    slurm_memory: str = Field(
        "",
        pattern=r"^$|^\d+[KMGT]?$",
        description="Memory of a run (--mem, e.g. 8G); empty = the partition's default.",
    )
    slurm_cpus_per_run: int = Field(1, ge=1, description="CPUs of a run (--cpus-per-task).")
    slurm_options: list[str] = Field(
        default_factory=list,
        description='Further sbatch options, one per item, e.g. ["--constraint=ssd"].',
    )
    slurm_python: str = Field(
        "",
        pattern=r"^\S*$",
        description="Python with pico-nb installed, as compute nodes see it; empty = this one.",
    )
    slurm_conf: str = Field(
        "", description="slurm.conf for Slurm's commands (SLURM_CONF); empty = Slurm's default."
    )
    member_accounts: bool = Field(
        False,
        description="Lab server: each member's runs execute as their own OS account "
        "pico-<name> (through the sudo helper) and data roots are per member by default.",
    )
    broker_url: str = Field("", description="Celery broker URL, e.g. redis://127.0.0.1:6379/0.")
    log_stream_url: str = Field(
        "", description="Redis URL carrying remote runs' live logs; empty = the broker URL."
    )
    smtp_host: str = Field("", description="Mail server for run notices; empty = no e-mail.")
    smtp_port: int = Field(25, ge=1, le=65535, description="Mail server port (587 with STARTTLS).")
    smtp_starttls: bool = Field(False, description="Upgrade the mail connection with STARTTLS.")
    smtp_username: str = Field("", description="Mail server login; empty = none.")
    smtp_password: str = Field(
        "", exclude=True, repr=False, description="Mail server password; never logged or passed on."
    )
    smtp_from: str = Field("pico-nb@localhost", description="Sender address of run notices.")

    @field_validator("slurm_options")
    @classmethod
    def _sbatch_options(cls, value: list[str]) -> list[str]:
        """Options only: a bare word would be taken by sbatch for the script to run."""
        bad = [option for option in value if not option.startswith("-")]
        if bad:
            raise ValueError(f"must be sbatch options starting with '-', not {bad[0]!r}")
        return value

    @property
    def effective_database_url(self) -> str:
        """The URL actually used, so the SQLite default follows the home."""
        return self.database_url or f"sqlite:///{self.home / 'pico-nb.sqlite'}"

    @property
    def effective_log_stream_url(self) -> str:
        """Where live logs of worker runs flow: the broker's Redis unless told otherwise."""
        return self.log_stream_url or self.broker_url

    @property
    def effective_data_roots(self) -> list[Path]:
        """Resolved roots as configured; by default the user's home folder and the data home."""
        return self.data_roots_for(None)

    def _default_roots(self) -> list[Path]:
        """Each member's own folder on a lab server; on a laptop, your home and the data home."""
        return [MEMBER_DATA_ROOT] if self.member_accounts else [Path.home(), self.home]

    @property
    def private_folders(self) -> list[Path]:
        """Folders no experiment may read or write: on a lab server the whole data home, else
        its logs, spool and hub state (the demo data lives in the data home)."""
        home = self.home.expanduser().resolve()
        if self.member_accounts:
            return [home]
        return [home / "logs", home / "spool", home / "hub", home / "pico-nb.sqlite"]

    def member_folders(self, username: str) -> list[Path]:
        """The data roots that are this member's own (those naming `{user}`), to create."""
        roots = self.data_roots or self._default_roots()
        return [Path(str(r).replace("{user}", username)) for r in roots if "{user}" in str(r)]

    def data_roots_for(self, username: str | None) -> list[Path]:
        """Roots with `{user}` filled in, so a lab can give each member a folder of their own."""
        roots = self.data_roots or self._default_roots()
        out = []
        for root in roots:
            text = str(root)
            if "{user}" in text:
                if username is None:
                    continue
                text = text.replace("{user}", username)
            out.append(Path(text).expanduser().resolve())
        return out


def _env_values() -> dict[str, Any]:
    """PICO_NB_* variables, with lists given comma-separated."""
    out: dict[str, Any] = {}
    for name, info in Settings.model_fields.items():
        raw = os.environ.get(ENV_PREFIX + name.upper())
        if raw is None:
            continue
        is_list = "list" in str(info.annotation)
        out[name] = [p.strip() for p in raw.split(",") if p.strip()] if is_list else raw
    return out


def load_settings(home: str | Path | None = None, **overrides: Any) -> Settings:
    """Read the layers in order; a bad value is a ValidationError naming the setting."""
    env = _env_values()
    base_home = Path(home).expanduser() if home is not None else default_home()
    config_path = Path(os.environ.get(ENV_PREFIX + "CONFIG", base_home / "pico_nb.toml"))
    values: dict[str, Any] = {"home": base_home}
    if config_path.is_file():
        try:
            values.update(tomllib.loads(config_path.read_text("utf-8")))
        except tomllib.TOMLDecodeError as exc:
            raise ValidationError.one(str(config_path), f"is not valid TOML: {exc}") from None
    values.update(env)
    if home is not None:
        values["home"] = base_home
    values.update(overrides)
    try:
        return Settings(**values)
    except PydanticError as exc:
        raise ValidationError(
            {".".join(map(str, e["loc"])) or "settings": e["msg"] for e in exc.errors()}
        ) from None
