"""One settings object: built-in defaults < pico_nb.toml < PICO_NB_* environment variables.

The fields are the one documentation of every setting: their descriptions and defaults make
the README's tables (:mod:`pico_nb.settings_docs`), the help of ``pico-nb hub`` and of the
hub's authenticator. Nested models (:mod:`pico_nb.hub_settings`) are tables of the settings
file (``[hub]``, ``[hub.login]``) and prefixes of the environment (``PICO_NB_HUB_PORT``,
``PICO_NB_HUB_LOGIN_MAX_DELAY``). Markers in a field's ``json_schema_extra``:
``same_on_workers`` (every Celery worker must use the lab's value,
:mod:`pico_nb.execution.worker_settings`), ``not_in_file`` (a flag or the environment only,
never a settings file members might write) and ``default_doc`` (the default in words).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic import ValidationError as PydanticError
from pydantic.fields import FieldInfo

from pico_nb.contract.errors import ValidationError
from pico_nb.hub_settings import HubSettings

ENV_PREFIX = "PICO_NB_"
MEMBER_DATA_ROOT = Path("/srv/pico-data/{user}")
SAME_ON_WORKERS: dict[str, Any] = {"same_on_workers": True}
M = TypeVar("M", bound=BaseModel)


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

    home: Path = Field(
        json_schema_extra={"default_doc": "`~/.local/share/pico-nb` (under `$XDG_DATA_HOME`)"},
        description="Data home: database, logs, demo data.",
    )
    database_url: str = Field(
        "",
        description="SQLAlchemy URL, e.g. `postgresql://user@host/db` (psycopg 3); empty = "
        "SQLite at `<home>/pico-nb.sqlite`.",
    )
    data_roots: list[Path] = Field(
        default_factory=list,
        json_schema_extra=SAME_ON_WORKERS,
        description="Folders experiments may read from and write to; `{user}` stands for the "
        "acting member's name; empty = your home folder and the data home, on a lab server "
        "(`member_accounts`) `/srv/pico-data/{user}`.",
    )
    member_accounts: bool = Field(
        False,
        json_schema_extra=SAME_ON_WORKERS,
        description="Lab server: each member's runs execute as their own OS account "
        "`pico-<name>` (through the sudo helper) and data roots are per member by default; "
        "`pico-nb hub` sets it for its service.",
    )
    pipeline_spec: Path | None = Field(
        None,
        description="TOML/JSON file defining a lab's own PICO command and parameters; empty = "
        "the built-in pipeline.",
    )
    max_concurrent_runs: int = Field(
        1,
        ge=1,
        description="Local executor: runs executing at once, counted over every run the "
        "database records as running (all on this machine); more wait in the queue. Celery: "
        "not used, each worker runs its own `--slots` at once (default one per GPU, or 1). "
        "Slurm: not used, Slurm queues the jobs.",
    )
    max_runs_per_user: int | None = Field(
        None,
        ge=1,
        json_schema_extra=SAME_ON_WORKERS,
        description="Running runs one member may hold at once (Celery: across all workers; "
        "Slurm: not used, the cluster's limits apply); empty = no cap.",
    )
    max_streams_per_user: int = Field(
        20,
        ge=1,
        description="Live logs one member may follow at once on the lab server (a 429 beyond; "
        "counted per service process).",
    )
    service_processes: int = Field(
        1, ge=1, le=64, description="Processes of the lab server's pico service, sharing its port."
    )
    gpus: list[str] = Field(
        default_factory=list,
        description="GPU ids handed out one per run as `CUDA_VISIBLE_DEVICES` by the local "
        "executor (a Celery worker's are its `--gpus`).",
    )
    stop_grace_seconds: float = Field(
        10.0,
        gt=0,
        json_schema_extra=SAME_ON_WORKERS,
        description="Seconds between SIGTERM and SIGKILL when a run is stopped.",
    )
    heartbeat_seconds: float = Field(
        2.0,
        gt=0,
        json_schema_extra=SAME_ON_WORKERS,
        description="How often a supervisor reports that its run is alive (and a worker that "
        "it is).",
    )
    lost_after_seconds: float = Field(
        30.0,
        gt=0,
        json_schema_extra=SAME_ON_WORKERS,
        description="Heartbeat age after which a run whose supervisor is gone is lost (and a "
        "worker is listed as lost); a Slurm job that Slurm still runs gets db_outage_seconds "
        "more, as its node may only have lost the database.",
    )
    db_outage_seconds: float = Field(
        120.0,
        gt=0,
        description="How long a supervisor rides out a database outage, its run going on, "
        "before it stops the run and records why.",
    )
    executor: Literal["local", "celery", "slurm"] = Field(
        "local",
        description="`local` = detached processes here; `celery` = workers via a broker (see "
        "Scaling out); `slurm` = one batch job per run on the lab's cluster (this machine a "
        "submit host).",
    )
    slurm_partition: str = Field(
        "", description="Slurm partition runs go to (`--partition`); empty = the cluster's default."
    )
    slurm_account: str = Field(
        "", description="Slurm account runs are charged to (`--account`); empty = the default."
    )
    slurm_qos: str = Field("", description="Slurm QOS of runs (`--qos`); empty = the default.")
    slurm_time_limit: str = Field(
        "",
        pattern=r"^$|^(\d+-)?\d+(:\d\d){0,2}$",
        description="Time limit of a run (`--time`, e.g. `2:00:00` or `1-00:00:00`); empty = the "
        "partition's.",
    )
    slurm_memory: str = Field(
        "",
        pattern=r"^$|^\d+[KMGT]?$",
        description="Memory of a run (`--mem`, e.g. `8G`); empty = the partition's default.",
    )
    slurm_cpus_per_run: int = Field(1, ge=1, description="CPUs of a run (`--cpus-per-task`).")
    slurm_options: list[str] = Field(
        default_factory=list,
        description='Further sbatch options, one per item, e.g. `["--constraint=ssd"]`.',
    )
    slurm_python: str = Field(
        "",
        pattern=r"^\S*$",
        description="Python with pico-nb installed, as compute nodes see it; empty = this one.",
    )
    slurm_conf: str = Field(
        "", description="`slurm.conf` for Slurm's commands (`SLURM_CONF`); empty = Slurm's default."
    )
    slurm_report_url: str = Field(
        "",
        pattern=r"^$|^https?://\S+$",
        description="The pico service's address as compute nodes reach it (e.g. the lab "
        "server's `https://…/services/pico/`), for jobs that run as their owner "
        "(`member_accounts`) and report through it; empty = the service's own address on the "
        "hub node (right only when the hub node runs the jobs).",
    )
    broker_url: str = Field(
        "", description="Celery broker URL, e.g. `redis://redis-host:6379/0`; required for celery."
    )
    log_stream_url: str = Field(
        "", description="Redis URL carrying remote runs' live logs; empty = the broker URL."
    )
    smtp_host: str = Field("", description="Mail server for run notices; empty = no e-mail.")
    smtp_port: int = Field(25, ge=1, le=65535, description="Mail server port (587 with STARTTLS).")
    smtp_starttls: bool = Field(False, description="Upgrade the mail connection with STARTTLS.")
    smtp_username: str = Field("", description="Mail server login; empty = none.")
    smtp_password: str = Field(
        "",
        exclude=True,
        repr=False,
        description="Mail server password; never logged nor passed to runs.",
    )
    smtp_from: str = Field("pico-nb@localhost", description="Sender address of run notices.")
    hub: HubSettings = Field(
        default_factory=lambda: HubSettings.model_validate({}),
        description="The lab server (`[hub]`): see Lab server.",
    )

    @field_validator("pipeline_spec", mode="before")
    @classmethod
    def _empty_is_builtin(cls, value: Any) -> Any:
        """An empty value means the built-in pipeline, as documented (not the folder '.')."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("slurm_options")
    @classmethod
    def _sbatch_options(cls, value: list[str]) -> list[str]:
        """Options only: a bare word would be taken by sbatch for the script to run."""
        bad = [option for option in value if not option.startswith("-")]
        if bad:
            raise ValueError(f"must be sbatch options starting with '-', not {bad[0]!r}")
        return value

    @field_validator("log_stream_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        """A Redis URL with the client to reach it, so a typo or a missing extra is said at
        start rather than as a failing request (or live logs silently off) later."""
        if not value:
            return value
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        try:
            import redis  # noqa: F401
        except ImportError:
            raise ValueError(
                "needs the redis package: pip install 'pico-nb[distributed]'"
            ) from None
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


@dataclass(frozen=True)
class SettingField:
    """One leaf setting: where it sits in the file, its environment variable, its metadata."""

    path: tuple[str, ...]
    info: FieldInfo

    @property
    def name(self) -> str:
        """The dotted name, as the settings file nests it: `hub.login.max_delay`."""
        return ".".join(self.path)

    @property
    def env(self) -> str:
        """The environment variable: `PICO_NB_HUB_LOGIN_MAX_DELAY`."""
        return ENV_PREFIX + "_".join(self.path).upper()

    def marked(self, marker: str) -> bool:
        """Whether the field carries a marker of its `json_schema_extra`."""
        extra = self.info.json_schema_extra
        return isinstance(extra, dict) and bool(extra.get(marker))

    def default(self) -> Any:
        """The built-in default (None for a field without one, such as `home`)."""
        if self.info.default_factory is not None:
            return self.info.default_factory()  # type: ignore[call-arg]
        return None if self.info.is_required() else self.info.default


def _nested(info: FieldInfo) -> type[BaseModel] | None:
    """The model of a field that is a table of its own, such as `hub`."""
    kind = info.annotation
    return kind if isinstance(kind, type) and issubclass(kind, BaseModel) else None


def setting_fields(
    model: type[BaseModel] = Settings, path: tuple[str, ...] = ()
) -> Iterator[SettingField]:
    """Every leaf setting of a model in declaration order, nested tables in place."""
    for name, info in model.model_fields.items():
        nested = _nested(info)
        if nested is None:
            yield SettingField((*path, name), info)
        else:
            yield from setting_fields(nested, (*path, name))


def _put(values: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    """Set a value at its place in nested tables."""
    for key in path[:-1]:
        values = values.setdefault(key, {})
    values[path[-1]] = value


def _merged(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """A later layer over an earlier one, table by table, so `[hub]` keeps unset keys."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def _env_values(model: type[BaseModel] = Settings, path: tuple[str, ...] = ()) -> dict[str, Any]:
    """PICO_NB_* variables, with lists given comma-separated."""
    out: dict[str, Any] = {}
    for field in setting_fields(model, path):
        raw = os.environ.get(field.env)
        if raw is None:
            continue
        is_list = "list" in str(field.info.annotation)
        _put(out, field.path[len(path) :], _split(raw) if is_list else raw)
    return out


def _split(raw: str) -> list[str]:
    """A list setting written comma-separated in one variable."""
    return [part.strip() for part in raw.split(",") if part.strip()]


def _refuse_file_only(data: Mapping[str, Any], path: Path) -> None:
    """A setting members might plant in a file (single-account mode) is taken from none."""
    for field in setting_fields():
        if not field.marked("not_in_file"):
            continue
        table: Any = data
        for key in field.path:
            table = table.get(key) if isinstance(table, Mapping) else None
        if table is not None:
            raise ValidationError.one(
                field.name, f"may be set only by a flag or {field.env}, never in {path}"
            )


def _validated(model: type[M], values: Mapping[str, Any], where: str = "") -> M:
    """Build a settings model; a bad value is a ValidationError naming the setting."""
    try:
        return model(**values)
    except PydanticError as exc:
        prefix = (where,) if where else ()
        raise ValidationError(
            {".".join(map(str, (*prefix, *e["loc"]))) or "settings": e["msg"] for e in exc.errors()}
        ) from None


def hub_from_environment(**flags: Any) -> HubSettings:
    """The hub's settings from its flags and PICO_NB_HUB_* alone: what a hub knows before it may
    read a data home (a hub that is not root must refuse before entering one)."""
    values = _merged(_env_values(HubSettings, ("hub",)), flags)
    return _validated(HubSettings, values, "hub")


def load_settings(home: str | Path | None = None, **overrides: Any) -> Settings:
    """Read the layers in order; a bad value is a ValidationError naming the setting."""
    env = _env_values()
    base_home = Path(home).expanduser() if home is not None else default_home()
    config_path = Path(os.environ.get(ENV_PREFIX + "CONFIG", base_home / "pico_nb.toml"))
    values: dict[str, Any] = {"home": base_home}
    if config_path.is_file():
        try:
            data = tomllib.loads(config_path.read_text("utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ValidationError.one(str(config_path), f"is not valid TOML: {exc}") from None
        _refuse_file_only(data, config_path)
        values = _merged(values, data)
    values = _merged(values, env)
    if home is not None:
        values["home"] = base_home
    return _validated(Settings, _merged(values, overrides))
