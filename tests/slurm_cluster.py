"""A real one-node Slurm cluster on this machine: munged, slurmctld and slurmd, without systemd.

Debian's `slurm-wlm` and `munge`, run as root. Everything lives under one folder (slurm.conf,
the munge key and socket, state, spool, logs) and the daemons listen on free ports, so the
machine's own /etc/slurm and /etc/munge are never used. Commands reach this cluster only through
`env` (SLURM_CONF). There is no slurmdbd, so `sacct` does not work: a finished job's state is read
from `scontrol show job` (kept for MinJobAge) or the jobcomp file.

Memory: with the cgroup v1 memory controller mounted (as here), proctrack/task cgroup enforce
`--mem` and a job over it ends OUT_OF_MEMORY; otherwise proctrack/linuxproc with OverMemoryKill
polls usage and the job ends FAILED, signal 9, "exceeded memory limit" in its output.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from support import free_port

PARTITION = "debug"
DAEMONS = ("munged", "slurmctld", "slurmd")
FINISHED = frozenset(
    {
        "BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL",
        "OUT_OF_MEMORY", "PREEMPTED", "TIMEOUT",
    }
)  # fmt: skip


def cgroup_v1_memory() -> bool:
    """Whether Slurm's cgroup/v1 plugin can enforce memory here (it needs memory and freezer)."""
    root = Path("/sys/fs/cgroup")
    return (root / "memory/memory.limit_in_bytes").exists() and (root / "freezer").is_dir()


class SlurmCluster:
    """One node named after this host, `cpus` CPUs, in partition `debug`; start() then stop()."""

    def __init__(
        self, cpus: int = 2, memory_mb: int = 2048, cgroups: bool | None = None, gpus: int = 0
    ) -> None:
        self.cpus, self.memory_mb, self.gpus = cpus, memory_mb, gpus
        self.cgroups = cgroup_v1_memory() if cgroups is None else cgroups
        self.node = socket.gethostname().split(".")[0]
        self.first_job_id = random.randint(1000, 900_000)  # ours alone in the shared cgroup tree
        self.root = Path()
        self.env: dict[str, str] = {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, root: Path) -> SlurmCluster:
        """Write the conf and key, start the daemons, and wait until the node is idle."""
        missing = [d for d in (*DAEMONS, "sbatch") if shutil.which(d) is None]
        if missing or os.geteuid() != 0:
            raise RuntimeError(f"need root and apt's slurm-wlm munge (missing: {missing})")
        self.root = root
        for sub in ("state", "spool", "log", "munge", "munge-key"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        root.chmod(0o755)  # members submitting as themselves read the conf, if root's parents allow
        (root / "munge").chmod(0o755)
        (root / "munge-key").chmod(0o700)
        key = root / "munge-key/munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        conf = root / "slurm.conf"
        conf.write_text(self._conf())
        (root / "cgroup.conf").write_text(CGROUP_CONF)
        if self.gpus:
            (root / "gres.conf").write_text(self._gres_conf())
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM")}
        self.env["SLURM_CONF"] = str(conf)
        try:
            sock = root / "munge/socket"
            self._spawn(
                "munged", "--foreground", "--force", f"--socket={sock}", f"--key-file={key}",
                f"--pid-file={root}/munge/munged.pid", f"--seed-file={root}/munge-key/seed",
                f"--log-file={root}/log/munged.log",
            )  # fmt: skip
            self.wait(lambda: self._alive() and sock.exists(), 10, "munged's socket")
            self._spawn("slurmctld", "-D", "-f", str(conf))
            self._spawn("slurmd", "-D", "-f", str(conf))
            self.wait(lambda: self._alive() and self.node_state() == "idle", 30, "an idle node")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Cancel every job, stop the daemons, then SIGKILL what outlived them (slurmstepd does)."""
        if self.procs.get("slurmctld") and self.procs["slurmctld"].poll() is None:
            self.run("scancel", "--partition", PARTITION, check=False)
            with contextlib.suppress(RuntimeError):
                self.wait(lambda: not self.run("squeue", "-h", "-o", "%i", check=False), 15, "")
        for name in reversed(DAEMONS):
            proc = self.procs.pop(name, None)
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for pid in self.leftovers():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._remove_cgroups()

    def leftovers(self) -> list[int]:
        """Live processes of this cluster: slurmstepd and jobs carry our SLURM_CONF or cwd."""
        conf = f"SLURM_CONF={self.env.get('SLURM_CONF')}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                    continue  # a zombie PID 1 has not reaped: nothing left to kill
                environ = (entry / "environ").read_bytes().split(b"\0")
                cwd = Path(os.readlink(entry / "cwd"))
            except OSError:
                continue
            if conf in environ or cwd.is_relative_to(self.root / "log"):
                found.append(int(entry.name))
        return found

    def _remove_cgroups(self) -> None:
        """Remove our jobs' cgroups that a SIGKILLed slurmstepd could not (empty ones only)."""
        ours = range(self.first_job_id, self.first_job_id + 1_000_000)
        for job in Path("/sys/fs/cgroup").glob(f"*/slurm_{self.node}/uid_*/job_*"):
            if job.name[4:].isdigit() and int(job.name[4:]) in ours:
                for sub in [*sorted(job.rglob("*"), reverse=True), job]:
                    if sub.is_dir():
                        with contextlib.suppress(OSError):
                            sub.rmdir()

    def run(self, *argv: str, check: bool = True) -> str:
        """A Slurm command against this cluster (argv, no shell); its stdout, stripped."""
        done = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=30)
        if check and done.returncode:
            raise RuntimeError(f"{argv} exited {done.returncode}: {done.stderr.strip()}")
        return done.stdout.strip()

    def sbatch(self, *args: str) -> str:
        """Submit a batch job; its job id."""
        return self.run("sbatch", "--parsable", *args).split(";")[0]

    def job(self, job_id: str) -> dict[str, str]:
        """`scontrol show job` as a dict (JobState, Reason, ExitCode, RunTime, …)."""
        fields = self.run("scontrol", "-o", "show", "job", job_id).split()
        return dict(f.split("=", 1) for f in fields if "=" in f)

    def wait_finished(self, job_id: str, timeout: float = 30) -> dict[str, str]:
        """Poll scontrol until the job has a final state; the job's fields then."""
        self.wait(lambda: self.job(job_id)["JobState"] in FINISHED, timeout, f"job {job_id}")
        return self.job(job_id)

    def node_state(self) -> str:
        """sinfo's state of our node (idle, mixed, allocated, down, …), or "" if unreachable."""
        return self.run("sinfo", "-h", "-n", self.node, "-o", "%T", check=False)

    def wait(self, ready: Callable[[], object], timeout: float, what: str) -> None:
        """Poll ready() until true (Slurm offers no event to wait on); raise, with logs, if late."""
        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out after {timeout} s waiting for {what}{self.logs()}")
            time.sleep(0.1)

    def logs(self) -> str:
        """The ends of the daemons' logs, for a failure's message."""
        files = sorted((self.root / "log").glob("*"))
        return "".join(f"\n--- {f}\n{f.read_text(errors='replace')[-2000:]}" for f in files)

    def __enter__(self) -> SlurmCluster:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _spawn(self, name: str, *args: str) -> None:
        """Start a daemon in the foreground, our child, its output in log/NAME.out."""
        with open(self.root / f"log/{name}.out", "ab") as out:
            self.procs[name] = subprocess.Popen(
                [name, *args], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=self.env, cwd=self.root / "log", start_new_session=True,
            )  # fmt: skip

    def _alive(self) -> bool:
        """True while every daemon started runs; raise, with logs, as soon as one has exited."""
        dead = [name for name, proc in self.procs.items() if proc.poll() is not None]
        if dead:
            raise RuntimeError(f"{', '.join(dead)} exited{self.logs()}")
        return True

    def _gres_conf(self) -> str:
        """gres.conf: GPUs Slurm schedules, as device files (null devices: nothing computes on
        them, but Slurm hands them out and sets CUDA_VISIBLE_DEVICES as for real ones)."""
        lines = []
        for index in range(self.gpus):
            device = self.root / "dev" / f"nvidia{index}"
            device.parent.mkdir(exist_ok=True)
            if not device.exists():
                os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
            lines.append(f"Name=gpu File={device}\n")
        return "".join(lines)

    def _conf(self) -> str:
        """slurm.conf: everything under root, free ports, finished jobs kept an hour."""
        root, cgroups = self.root, self.cgroups
        return f"""\
ClusterName=pico
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge/socket
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
JobCompType=jobcomp/filetxt
JobCompLoc={root}/log/jobcomp.txt
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=1
{"" if cgroups else "JobAcctGatherParams=OverMemoryKill"}
ProctrackType=proctrack/{"cgroup" if cgroups else "linuxproc"}
TaskPlugin=task/{"cgroup" if cgroups else "none"}
MpiDefault=none
MailProg=/bin/true
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=256
FirstJobId={self.first_job_id}
ReturnToService=2
SlurmdParameters=config_overrides
SlurmdTimeout=30
MinJobAge=3600
KillWait=5
InactiveLimit=0
{"GresTypes=gpu" if self.gpus else ""}
NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.memory_mb} \
{f"Gres=gpu:{self.gpus} " if self.gpus else ""}State=UNKNOWN
PartitionName={PARTITION} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
"""


# Read only when slurm.conf names the cgroup plugins; jobs go under /sys/fs/cgroup/*/slurm_HOST.
CGROUP_CONF = """\
CgroupPlugin=cgroup/v1
CgroupMountpoint=/sys/fs/cgroup
ConstrainRAMSpace=yes
ConstrainSwapSpace=no
ConstrainCores=no
ConstrainDevices=no
"""
