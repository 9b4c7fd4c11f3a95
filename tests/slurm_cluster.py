"""A real single-node Slurm for the tests: Debian's slurm-wlm and munge, installed when missing (as root),
with a private munged, slurmctld and slurmd on 127.0.0.1, and no accounting (as on many small clusters).

Everything of one cluster lives in its own folder under ``BASE``: munge key and socket, slurm.conf, state,
logs and pid files, on ports picked free, so two test processes (pytest-xdist workers) or a developer's own
Slurm never meet it. The daemons are found again by that folder's path (on their command lines, and in the
environment of the jobs they start), which is how ``stop`` ends them, and how a later session ends those of
a session that was killed before it could. Every wait is bounded.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import apt_packages

# World-traversable (munged refuses a socket in a folder that others cannot enter, as pytest's tmp folders are).
BASE = Path(tempfile.gettempdir()) / "fewshot-bench-slurm"
SBIN = "/usr/sbin:/sbin"
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scontrol", "scancel", "sinfo")
INSTALL_TIMEOUT_S = 900  # a fresh machine downloads ~60 MB of packages
UP_TIMEOUT_S = 60


class SlurmUnavailable(Exception):
    """Why no Slurm can be brought up here (the tests that need it skip with this reason)."""


def _path() -> str:
    return os.environ.get("PATH", "") + os.pathsep + SBIN


def _which(name: str) -> str | None:
    return shutil.which(name, path=_path())


def _tail(text: str, lines: int = 3) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


def ensure_installed() -> None:
    """Install slurm-wlm and munge from the distribution's packages when a daemon or client is missing;
    SlurmUnavailable when that cannot be done here (not root, no apt-get, the install fails)."""
    if all(_which(name) for name in DAEMONS + CLIENTS):
        return
    failed = apt_packages.install(["slurm-wlm", "munge"], timeout_s=INSTALL_TIMEOUT_S, path=_path())
    if failed:
        raise SlurmUnavailable(f"Slurm is not installed and could not be: {failed}")
    if not all(_which(name) for name in DAEMONS + CLIENTS):
        raise SlurmUnavailable("slurm-wlm and munge were installed, yet a Slurm daemon or client is not on PATH")


def free_port() -> int:
    """A TCP port nothing listens on now (the kernel's pick)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _node_line() -> str:
    """This machine as `slurmd -C` describes it (CPUs, sockets, cores, RealMemory): the node line of the conf."""
    done = subprocess.run([_which("slurmd") or "slurmd", "-C"], capture_output=True, text=True, timeout=30)
    line = next((l for l in done.stdout.splitlines() if l.startswith("NodeName=")), None)
    if line is None:
        raise SlurmUnavailable(f"`slurmd -C` did not describe this machine: {_tail(done.stdout + done.stderr)}")
    return line.strip()


def write_conf(root: Path, controller_port: int, node_port: int) -> Path:
    """A minimal slurm.conf for a cluster of this one machine, everything under ``root``."""
    node = _node_line()
    name = node.split()[0].split("=", 1)[1]
    conf = root / "slurm.conf"
    conf.write_text("\n".join([
        "ClusterName=fewshotbench",
        f"SlurmctldHost={name}(127.0.0.1)",
        f"SlurmctldPort={controller_port}",
        f"SlurmdPort={node_port}",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={root / 'munge' / 'munge.socket'}",
        "SlurmUser=root",
        "SlurmdUser=root",
        f"StateSaveLocation={root / 'ctld'}",
        f"SlurmdSpoolDir={root / 'slurmd'}",
        f"SlurmctldPidFile={root / 'slurmctld.pid'}",
        f"SlurmdPidFile={root / 'slurmd.pid'}",
        f"SlurmctldLogFile={root / 'slurmctld.log'}",
        f"SlurmdLogFile={root / 'slurmd.log'}",
        # No cgroups in a container: processes are tracked by parentage, and tasks are not bound.
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "MpiDefault=none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_CPU",
        "SchedulerType=sched/backfill",
        # No accounting, as on many small clusters: sacct answers "accounting storage is disabled".
        "AccountingStorageType=accounting_storage/none",
        "JobAcctGatherType=jobacct_gather/none",
        "JobCompType=jobcomp/none",
        "ReturnToService=2",
        # scancel: SIGTERM (which submitit's jobs ignore), then SIGKILL after KillWait (30 s by default).
        "KillWait=2",
        "SlurmctldTimeout=30",
        "SlurmdTimeout=30",
        f"{node} NodeAddr=127.0.0.1 State=UNKNOWN",
        f"PartitionName=debug Nodes={name} Default=YES MaxTime=INFINITE State=UP",
        "",
    ]))
    return conf


def _processes_of(root: Path) -> list[int]:
    """Processes (other than this one) that belong to the cluster in ``root``: its daemons (the folder is on
    their command lines) and its jobs' processes (its slurm.conf is in their environment)."""
    marker, conf = str(root).encode(), f"SLURM_CONF={root / 'slurm.conf'}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker in cmdline or conf in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def end_processes_of(root: Path, grace_s: float = 2.0) -> None:
    """SIGTERM every process of the cluster in ``root``, then SIGKILL what is left after ``grace_s`` (the
    daemons end at once; a job's submitit worker ignores SIGTERM, as it does under scancel)."""
    deadline = time.monotonic() + grace_s
    sig = signal.SIGTERM
    while True:
        pids = [pid for pid in _processes_of(root) if _alive(pid) and pid not in _ancestors()]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        if sig == signal.SIGKILL and time.monotonic() > deadline + 5:
            return  # unkillable (a process in uninterruptible sleep): nothing more to do
        if time.monotonic() > deadline:
            sig = signal.SIGKILL
        time.sleep(0.2)


def _ancestors() -> set[int]:
    """This process and those above it (a pytest started with the cluster's SLURM_CONF must not end itself)."""
    found, pid = set(), os.getpid()
    while pid > 1 and pid not in found:
        found.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return found


def reap_abandoned() -> None:
    """End the clusters of earlier sessions whose test process is gone (killed before its teardown)."""
    if not BASE.is_dir():
        return
    for root in BASE.iterdir():
        try:
            owner = int((root / "owner").read_text())
        except (OSError, ValueError):
            owner = 0
        if owner and _alive(owner):
            continue  # a live session's cluster (another pytest-xdist worker, another developer)
        end_processes_of(root)
        shutil.rmtree(root, ignore_errors=True)


def _wait_until(condition, what: str, log: Path | None, timeout_s: float = UP_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    said = f"; {log.name}: {_tail(log.read_text(errors='replace'))}" if log is not None and log.exists() else ""
    raise SlurmUnavailable(f"{what} within {timeout_s:.0f} s{said}")


@dataclass
class SlurmCluster:
    """A running single-node Slurm: ``env`` points Slurm's commands at it; ``stop`` ends it and its jobs."""

    root: Path
    conf: Path
    env: dict[str, str] = field(default_factory=dict)

    def command(self, *args: str, timeout_s: float = 30) -> subprocess.CompletedProcess:
        """A Slurm command (``squeue``, ``scancel``...) run against this cluster."""
        return subprocess.run(list(args), capture_output=True, text=True, env=self.env, timeout=timeout_s)

    def stop(self) -> None:
        try:
            self.command("scancel", "--full", f"--user={os.getuid()}", timeout_s=10)  # jobs first, then the daemons
        except (OSError, subprocess.SubprocessError):
            pass
        end_processes_of(self.root)
        shutil.rmtree(self.root, ignore_errors=True)


def start_cluster() -> SlurmCluster:
    """Install (if needed) and start a single-node Slurm, waiting (bounded) until its node is idle;
    SlurmUnavailable with the reason when that cannot be done here."""
    if os.geteuid() != 0:
        raise SlurmUnavailable("bringing up Slurm needs root (slurmd starts jobs as their users)")
    ensure_installed()
    reap_abandoned()
    BASE.mkdir(exist_ok=True)
    BASE.chmod(0o755)
    root = Path(tempfile.mkdtemp(prefix="cluster-", dir=BASE))
    root.chmod(0o755)
    (root / "owner").write_text(str(os.getpid()))
    cluster = SlurmCluster(root, write_conf(root, free_port(), free_port()))
    cluster.env = {**os.environ, "SLURM_CONF": str(cluster.conf), "PATH": _path()}
    try:
        _start_daemons(cluster)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _start_daemons(cluster: SlurmCluster) -> None:
    root = cluster.root
    for folder, mode in (("key", 0o700), ("munge", 0o755), ("ctld", 0o755), ("slurmd", 0o755)):
        (root / folder).mkdir(mode=mode)
        (root / folder).chmod(mode)
    key = root / "key" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    munge = root / "munge"
    daemons = [
        [_which("munged"), f"--socket={munge / 'munge.socket'}", f"--key-file={key}",
         f"--log-file={munge / 'munged.log'}", f"--pid-file={munge / 'munged.pid'}",
         f"--seed-file={munge / 'munged.seed'}"],
        # -f: the conf's path on the command line, by which the daemons are found again.
        [_which("slurmctld"), "-f", str(cluster.conf)],
        [_which("slurmd"), "-f", str(cluster.conf)],
    ]
    logs = [munge / "munged.log", root / "slurmctld.log", root / "slurmd.log"]
    for command, log in zip(daemons, logs):
        # Each forks into the background once it is set up; the foreground process ends at once.
        done = subprocess.run(command, capture_output=True, text=True, env=cluster.env, timeout=60,
                              stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            said = _tail(done.stdout + done.stderr + (log.read_text(errors="replace") if log.exists() else ""))
            raise SlurmUnavailable(f"{Path(command[0]).name} did not start: {said}")
        if command[0].endswith("munged"):
            _wait_until(lambda: (munge / "munge.socket").exists(), "munged made no socket", log)

    def node_idle() -> bool:
        try:
            done = cluster.command("sinfo", "--noheader", "--format=%T", timeout_s=15)
        except subprocess.TimeoutExpired:
            return False
        return done.returncode == 0 and done.stdout.strip().rstrip("*") == "idle"

    _wait_until(node_idle, "the Slurm node did not become idle", root / "slurmd.log")
