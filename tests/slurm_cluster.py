"""A real single-node SLURM for the tests: found, or started in a private directory.

Debian's ``slurmctld``, ``slurmd``, ``slurm-client`` and ``munge`` packages (``.ci/install_slurm.sh``)
are enough. :func:`start_cluster` writes a minimal ``slurm.conf`` for this host (its name, CPUs
and memory from ``slurmd -C``) with no cgroups (``proctrack/linuxproc``, ``task/none``) and no
accounting database, a private munge key and socket, and free ports, so that it collides with
neither a system SLURM nor a second test session. The daemons run in the foreground as child
processes of the test and are stopped by their process ids. Every client command (``sbatch``,
``squeue``, ``srun`` inside the jobs) finds this cluster through ``SLURM_CONF`` and wrappers on ``PATH``, which
:attr:`SlurmCluster.env` carries and ``sbatch --export=ALL`` passes on to the jobs.

An existing cluster is used instead when ``MEDREPRO_SLURM_PARTITION`` names one of its partitions
(the test's scratch directory must then be on a file system the compute nodes share: pytest's
``--basetemp``).

Without the binaries, or without root (munge and slurmd need it), the SLURM tests are skipped with
the reason; with ``MEDREPRO_REQUIRE_SLURM=1`` (CI) they fail instead.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import pytest

__all__ = [
    "REQUIRE_ENV",
    "PARTITION_ENV",
    "SlurmCluster",
    "slurm_unavailable",
    "start_cluster",
    "existing_cluster",
    "slurm_cluster",
]

#: Set (to anything but "" or "0") to turn a missing or unstartable SLURM into a test failure.
REQUIRE_ENV = "MEDREPRO_REQUIRE_SLURM"
#: A partition of an already running cluster to use instead of starting one.
PARTITION_ENV = "MEDREPRO_SLURM_PARTITION"

#: The binaries the tests need: daemons, clients used by the executor plugin, munge.
DAEMONS = ("slurmctld", "slurmd", "munged")
CLIENTS = ("sbatch", "squeue", "scancel", "scontrol", "sinfo", "srun")
#: Memory left to the operating system and the submitting Snakemake (MB).
MEMORY_HEADROOM_MB = 2048
#: Name of the partition of the private cluster.
PARTITION = "main"
#: Memory the private node advertises at least (MB). The rules ask for production sizes (up to
#: 8 GB, doubled on a retry by the SLURM profile) while smoke-scale jobs use well under 2 GB;
#: nothing enforces the limit (no cgroups), so a small CI machine may schedule them all.
MIN_ADVERTISED_MB = 32768


def _required() -> bool:
    return os.environ.get(REQUIRE_ENV, "") not in ("", "0")


def slurm_unavailable(reason: str) -> NoReturn:
    """Skip the calling test with ``reason``, or fail it when SLURM is required (CI)."""
    if _required():
        pytest.fail(f"SLURM required ({REQUIRE_ENV} is set) but unavailable: {reason}")
    pytest.skip(f"no SLURM: {reason} (run `bash .ci/install_slurm.sh` as root)")


def _which(name: str) -> str | None:
    # Debian installs the daemons in /usr/sbin, which a non-login PATH may lack.
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


@dataclass
class SlurmCluster:
    """A reachable SLURM: the partition to submit to and the environment its clients need.

    Attributes:
        partition: partition the test's jobs go to.
        env: environment for every client command and for Snakemake (``SLURM_CONF`` of a
            private cluster; the caller's environment otherwise).
        cpus: CPUs of the (smallest) node of the partition.
        memory_mb: memory SLURM may hand out on that node.
        root: the private cluster's directory (config, state, logs); None for an existing one.
    """

    partition: str
    env: dict[str, str]
    cpus: int
    memory_mb: int
    root: Path | None = None
    _procs: list[subprocess.Popen] = field(default_factory=list, repr=False)

    def run(self, *cmd: str, check: bool = True, timeout: float = 30) -> str:
        """Run a SLURM client command against this cluster and return its stdout."""
        result = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {result.stdout}{result.stderr}")
        return result.stdout

    def jobs(self) -> list[dict[str, str]]:
        """Jobs the controller still knows: ``id``, ``state``, ``name``, ``comment``.

        The executor plugin names every job after the Snakemake run and puts
        ``rule_<rule>_wildcards_<...>`` in its comment.
        """
        out = self.run("squeue", "--noheader", "--states=all", "--format=%i|%T|%j|%k")
        rows = []
        for line in out.splitlines():
            parts = line.strip().split("|", 3)
            if len(parts) == 4:
                rows.append(dict(zip(("id", "state", "name", "comment"), parts, strict=True)))
        return rows

    def cancel(self, job_id: str) -> None:
        self.run("scancel", job_id)

    def logs(self) -> str:
        """The tail of the private daemons' logs (for failure messages)."""
        if self.root is None:
            return ""
        tails = []
        for log in sorted(
            [*(self.root / "log").glob("*.log"), *(self.root / "munge").glob("*.log")]
        ):
            tails.append(f"--- {log.name}\n{log.read_text(errors='replace')[-2000:]}")
        return "\n".join(tails)

    def stop(self) -> None:
        """Cancel the jobs left on a private cluster, then stop the daemons this process started."""
        if self.root is not None and self._procs:
            subprocess.run(
                ["scancel", "--full", "--partition", self.partition],
                env=self.env, capture_output=True, timeout=30,
            )  # fmt: skip
        for proc in reversed(self._procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
        self._procs.clear()


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _node_hardware() -> dict[str, str]:
    """``slurmd -C``'s description of this host (NodeName, CPUs, sockets, RealMemory...)."""
    out = subprocess.run(
        [_which("slurmd") or "slurmd", "-C"], capture_output=True, text=True, timeout=30
    ).stdout
    fields = {}
    for token in out.split():
        if "=" in token:
            key, value = token.split("=", 1)
            fields[key] = value
    if "NodeName" not in fields or "CPUs" not in fields:
        fields["NodeName"] = socket.gethostname().split(".")[0]
        fields["CPUs"] = str(os.cpu_count() or 1)
    if "RealMemory" not in fields:
        pages, page = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        fields["RealMemory"] = str(pages * page // 2**20)
    return fields


def _advertised_mb(hw: dict[str, str]) -> int:
    return max(int(hw["RealMemory"]) - MEMORY_HEADROOM_MB, MIN_ADVERTISED_MB)


def _slurm_conf(root: Path, hw: dict[str, str], ports: list[int]) -> str:
    node = hw["NodeName"]
    memory = _advertised_mb(hw)
    topology = " ".join(
        f"{key}={hw[key]}"
        for key in ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore")
        if key in hw
    )
    return f"""\
# Written by tests/slurm_cluster.py: one node, no cgroups, no accounting, private munge.
ClusterName=medrepro-test
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ports[0]}
SlurmdPort={ports[1]}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge/munge.socket
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/run/slurmctld.pid
SlurmdPidFile={root}/run/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
# Finished jobs stay visible to squeue for 5 minutes: the executor plugin reads their final
# state there (no accounting database for sacct), and uses squeue only if MinJobAge is
# at least 3 x --slurm-init-seconds-before-status-checks.
MinJobAge=300
# Trust this file's node description (RealMemory may exceed the machine's, see MIN_ADVERTISED_MB).
SlurmdParameters=config_overrides
KillWait=5
NodeName={node} NodeAddr=127.0.0.1 {topology} RealMemory={memory} State=UNKNOWN
PartitionName={PARTITION} Nodes={node} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
"""


def _start_munge(root: Path) -> subprocess.Popen:
    """A munged with its own key and socket under ``root/munge``, run as the munge user."""
    mdir = root / "munge"
    mdir.mkdir()
    mdir.chmod(0o755)  # munged requires a socket directory that everyone may traverse
    key = mdir / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    cmd = [
        _which("munged") or "munged", "--foreground",
        f"--socket={mdir}/munge.socket", f"--key-file={key}",
        f"--pid-file={mdir}/munged.pid", f"--log-file={mdir}/munged.log",
        f"--seed-file={mdir}/munged.seed",
    ]  # fmt: skip
    try:
        user = pwd.getpwnam("munge")
    except KeyError:
        user = None
    if user is not None and os.geteuid() == 0:
        for path in (mdir, key):
            os.chown(path, user.pw_uid, user.pw_gid)
        cmd = ["runuser", "-u", "munge", "--", *cmd]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    _wait(lambda: (mdir / "munge.socket").exists(), 20, "munged socket", proc)
    return proc


def _wait(ready, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited with code {proc.returncode}")
        time.sleep(0.5)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


def start_cluster() -> SlurmCluster:
    """Start munged, slurmctld and slurmd for this host in a fresh private directory.

    Raises:
        RuntimeError: a daemon did not start or the node did not become idle (the message
            has the daemons' log tails).
    """
    root = Path(tempfile.mkdtemp(prefix="medrepro-slurm-"))
    root.chmod(0o755)  # munged runs as `munge` and must reach its directory
    for sub in ("state", "spool", "run", "log"):
        (root / sub).mkdir()
    hw = _node_hardware()
    conf = root / "slurm.conf"
    conf.write_text(_slurm_conf(root, hw, _free_ports(2)))
    # The plugin stack of Debian's /etc/slurm/plugstack.conf is not needed (and may be absent).
    (root / "plugstack.conf").write_text("")
    env = {**os.environ, "SLURM_CONF": str(conf)}
    # The SLURM jobstep plugin (0.6.1) removes every SLURM_* variable, SLURM_CONF included,
    # before the `srun` inside a job, so `srun` would look for /etc/slurm/slurm.conf. Client
    # wrappers that set SLURM_CONF themselves, first on PATH (which `--export=ALL` passes on),
    # keep this cluster private. A site's cluster, configured in /etc/slurm, needs none of this.
    bindir = root / "bin"
    bindir.mkdir()
    for client in (*CLIENTS, "sacct"):
        real = _which(client)
        if real is not None:
            shim = bindir / client
            shim.write_text(f'#!/bin/sh\nSLURM_CONF="{conf}" exec "{real}" "$@"\n')
            shim.chmod(0o755)
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    for var in ("SLURM_JOB_ID", "SLURM_JOBID", "SBATCH_PARTITION", "SLURM_PARTITION"):
        env.pop(var, None)
    cluster = SlurmCluster(
        partition=PARTITION,
        env=env,
        cpus=int(hw["CPUs"]),
        memory_mb=_advertised_mb(hw),
        root=root,
    )
    try:
        cluster._procs.append(_start_munge(root))
        for daemon in ("slurmctld", "slurmd"):
            log = open(root / "log" / f"{daemon}.stdout.log", "w")  # noqa: SIM115
            cluster._procs.append(
                subprocess.Popen(
                    [_which(daemon) or daemon, "-D", "-f", str(conf)],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=root,
                )  # fmt: skip
            )
            if daemon == "slurmctld":
                _wait(
                    lambda: subprocess.run(
                        ["scontrol", "ping"], env=env, capture_output=True, text=True
                    ).stdout.count("UP") > 0,
                    60, "slurmctld to answer", cluster._procs[-1],
                )  # fmt: skip
        _wait(
            lambda: cluster.run("sinfo", "--noheader", "--format=%T", check=False).strip()
            in ("idle", "mixed", "allocated"),
            60, "the node to become idle", cluster._procs[-1],
        )  # fmt: skip
    except (RuntimeError, OSError, subprocess.SubprocessError) as err:
        logs = cluster.logs()
        cluster.stop()
        raise RuntimeError(f"{err}\n{logs}") from err
    return cluster


def existing_cluster(partition: str) -> SlurmCluster:
    """The running cluster of the caller's environment, submitting to ``partition``."""
    env = dict(os.environ)
    out = subprocess.run(
        ["sinfo", "--noheader", "--partition", partition, "--format=%c %m"],
        env=env, capture_output=True, text=True, timeout=30,
    ).stdout.split()  # fmt: skip
    if len(out) < 2:
        raise RuntimeError(f"partition {partition!r} not found by sinfo")
    return SlurmCluster(
        partition=partition,
        env=env,
        cpus=int(out[0].rstrip("+")),
        memory_mb=int(out[1].rstrip("+")),
    )


def slurm_cluster() -> Iterator[SlurmCluster]:
    """Fixture body: an existing cluster (``MEDREPRO_SLURM_PARTITION``) or a private one.

    Skips (or fails, with ``MEDREPRO_REQUIRE_SLURM``) with the reason when neither is possible.
    """
    missing = [name for name in CLIENTS if _which(name) is None]
    partition = os.environ.get(PARTITION_ENV)
    if not partition:
        missing += [name for name in DAEMONS if _which(name) is None]
    if missing:
        slurm_unavailable(f"{', '.join(missing)} not found")
    if partition:
        try:
            cluster = existing_cluster(partition)
        except (RuntimeError, OSError, subprocess.SubprocessError) as err:
            slurm_unavailable(f"cluster of partition {partition!r} unreachable: {err}")
    else:
        if os.geteuid() != 0:
            slurm_unavailable("starting munged and slurmd needs root")
        try:
            cluster = start_cluster()
        except RuntimeError as err:
            slurm_unavailable(f"could not start a single-node cluster: {err}")
    try:
        yield cluster
    finally:
        cluster.stop()
        if cluster.root is not None:
            shutil.rmtree(cluster.root, ignore_errors=True)
