"""Engines and transactions: SQLite in WAL mode with BEGIN IMMEDIATE writes, or PostgreSQL."""

from __future__ import annotations

import fcntl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from pico_nb.file_modes import private_file, private_folder

if TYPE_CHECKING:
    from alembic.config import Config

SCHEMA_REVISION = "0007_job_tokens"
# PostgreSQL advisory lock keys, one per thing serialised; SQLite's BEGIN IMMEDIATE (or a file
# lock for migrations) serialises the same things there.
MIGRATION_LOCK = 7311
QUEUE_LOCK = 7312  # claims, stops and run numbers
LOGIN_LOCK = 7314  # login throttle counters
"""The newest migration; checked against the migrations folder by the tests."""

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()
_WRITE = "pico_write"


def normalise_url(url: str) -> str:
    """Use psycopg 3 for plain postgresql:// URLs, the driver we depend on."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _sqlite_engine(url: str) -> Engine:
    """SQLite tuned for many concurrent kernels: WAL, a busy timeout, explicit BEGINs."""
    path = make_url(url).database
    if path and path != ":memory:":
        private_file(private_folder(Path(path).parent) / Path(path).name)  # SQLite copies its mode
    engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        immediate = connection.get_execution_options().get(_WRITE)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def get_engine(url: str) -> Engine:
    """One engine per URL per process, so many Lab objects share one pool."""
    url = normalise_url(url)
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            if url.startswith("sqlite"):
                engine = _sqlite_engine(url)
            else:
                engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)
            _engines[url] = engine
        return engine


class Database:
    """Sessions for reading and for read-then-write, on one engine."""

    def __init__(self, url: str) -> None:
        self.engine = get_engine(url)
        self.url = self.engine.url
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(
            self.engine.execution_options(**{_WRITE: True}), expire_on_commit=False
        )

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A short read transaction."""
        with self._read() as session, session.begin():
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction that takes the write lock at its start (SQLite: BEGIN IMMEDIATE)."""
        with self._write() as session, session.begin():
            yield session

    @property
    def max_id(self) -> int:
        """The largest id the id columns hold: SQLite's are 64-bit, PostgreSQL's INTEGER 32-bit,
        so a larger (valid) id is simply not there and must not reach the query as an overflow."""
        return 2**63 - 1 if self.is_sqlite else 2**31 - 1

    @property
    def is_sqlite(self) -> bool:
        """SQLite locks the whole file; PostgreSQL needs row locks (FOR UPDATE) instead."""
        return self.engine.dialect.name == "sqlite"


def _alembic_config(engine: Engine) -> Config:
    """Alembic configured in code, so no alembic.ini has to be found on disk."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(resources.files("pico_nb") / "migrations"))
    config.attributes["engine"] = engine
    return config


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """Only one process upgrades at a time; the rest wait and then find nothing to do."""
    if engine.dialect.name == "sqlite":
        lock_path = Path(str(engine.url.database) + ".migrate.lock")
        with open(private_file(lock_path), "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield
        return
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
            conn.commit()


def advisory_xact_lock(session: Session, key: int) -> None:
    """Serialise a transaction with others taking the same key, until it ends (PostgreSQL);
    SQLite's write transactions are already serial (BEGIN IMMEDIATE)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def head_revision(engine: Engine) -> str | None:
    """The newest migration shipped with this package."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config(engine)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The migration the database is at, or None for an empty database; no alembic import."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def upgrade(engine: Engine) -> None:
    """Bring any database, empty or old, to the newest schema."""
    from alembic import command

    if current_revision(engine) == SCHEMA_REVISION:
        return
    head = head_revision(engine)
    with _migration_lock(engine):
        if current_revision(engine) != head:
            command.upgrade(_alembic_config(engine), "head")


_opened: set[str] = set()


def open_database(url: str) -> Database:
    """A ready database: migrated on first open in this process."""
    db = Database(url)
    key = db.url.render_as_string(hide_password=False)
    if key not in _opened:
        upgrade(db.engine)
        _opened.add(key)
    return db
