"""Servers a test may stop and start at will: a PostgreSQL cluster and a tiny full-able disk.

PostgreSQL refuses to run as root, so the cluster runs as the `postgres` account, in a folder
of its own under /tmp that it can reach.
"""

from __future__ import annotations

import glob
import shutil
import subprocess
import tempfile
from pathlib import Path

from support import free_port


def _as_postgres(*argv: str) -> None:
    """Run a PostgreSQL tool as the postgres account, failing loudly with its output."""
    done = subprocess.run(
        ["runuser", "-u", "postgres", "--", *argv], capture_output=True, text=True, timeout=120
    )
    if done.returncode:
        raise RuntimeError(f"{argv[0]} failed: {done.stdout}{done.stderr}")


class PrivatePostgres:
    """A throwaway PostgreSQL cluster on a free port, with trust auth on 127.0.0.1."""

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not found:
            raise RuntimeError("PostgreSQL server binaries are missing (apt: postgresql)")
        self.bin = Path(found[-1])
        self.root = Path(tempfile.mkdtemp(prefix="pico-pg-"))
        shutil.chown(self.root, "postgres", "postgres")
        self.data = self.root / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        _as_postgres(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-N"
        )
        self.start()

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.root / "server.log")
        _as_postgres(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", log, "-w", "start"
        )

    def stop(self) -> None:
        """Stop the server at once, dropping every connection, as an outage does."""
        _as_postgres(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"
        )

    def close(self) -> None:
        """Stop the server if it runs and remove its files."""
        subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                str(self.bin / "pg_ctl"),
                "-D",
                str(self.data),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
            capture_output=True,
            timeout=120,
        )
        shutil.rmtree(self.root, ignore_errors=True)


class SmallDisk:
    """A tmpfs of a few megabytes mounted on a folder, so writes there soon hit ENOSPC."""

    def __init__(self, folder: Path, size: str = "3m") -> None:
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
            check=True,
            timeout=60,
        )
        self.folder = folder

    def close(self) -> None:
        """Unmount it, even if a process still has a file open there."""
        subprocess.run(["umount", "-l", str(self.folder)], check=True, timeout=60)
