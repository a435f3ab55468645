r"""A real one-node SLURM cluster on the loopback interface, for tests and for trying the SLURM profile.

It runs on one machine (Debian, as root):

    sudo .venv/bin/python tests/slurm/local_cluster.py     # starts it; Ctrl-C stops it
    # in another shell, in a working directory of your choice:
    .venv/bin/snakemake --snakefile /path/to/repo/Snakefile --profile /path/to/repo/profiles/slurm \
        --configfile /path/to/repo/.test/config.yaml

What it does (tests/test_slurm.py uses the same code):

* installs `slurm-wlm` and `munge` with apt-get if `slurmctld`, `slurmd`, `sbatch`, `munged`
  are missing (running `apt-get update` first only if the install fails);
* creates a private directory /tmp/comir-slurm-XXXX holding a fresh munge key and socket,
  SLURM's state, spool, logs and pid files, and a fake GPU (a character device);
* writes /etc/slurm/slurm.conf and /etc/slurm/gres.conf from tests/slurm/*.conf.in (the
  default location: the Snakemake SLURM job-step plugin drops SLURM_CONF from the
  environment of its inner `srun`, so a configuration elsewhere would not reach it); it
  refuses to touch a slurm.conf that it did not write;
* starts `munged -F`, `slurmctld -D` and `slurmd -D` on free loopback ports and waits for
  `sinfo` to report the node idle;
* on stop: cancels any job left, ends the three daemons by pid (SIGTERM, then SIGKILL),
  removes the two configuration files and the private directory. Nothing else is kept,
  so the next start begins from scratch. A lock file serialises concurrent users.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ETC = Path("/etc/slurm")
MARKER = "# written by tests/slurm/local_cluster.py"
LOCK = Path("/run/lock" if Path("/run/lock").is_dir() else "/tmp") / "comir-slurm-test.lock"
PACKAGES = ["slurm-wlm", "munge"]
PROGRAMS = ["slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scancel", "srun", "munged", "munge"]


class Unavailable(Exception):
    """SLURM cannot run here; the message says why."""


def run(cmd: list[str], timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)


def missing_programs() -> list[str]:
    return [p for p in PROGRAMS if shutil.which(p) is None and not Path("/usr/sbin", p).exists()]


def ensure_installed() -> None:
    """slurm-wlm and munge through apt-get (as root), unless already installed."""
    if os.geteuid() != 0:
        raise Unavailable(f"a SLURM test cluster needs root (uid is {os.geteuid()})")
    if not missing_programs():
        return
    if shutil.which("apt-get") is None:
        raise Unavailable(f"SLURM programs {missing_programs()} are missing and there is no apt-get to install them")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", "-o", "DPkg::Lock::Timeout=300", *PACKAGES]
    result = run(install, timeout=900, env=env)
    if result.returncode != 0:  # stale or missing package lists on a fresh machine
        update = run(["apt-get", "update", "-q", "-o", "DPkg::Lock::Timeout=300"], timeout=600, env=env)
        result = run(install, timeout=900, env=env)
        if result.returncode != 0:
            raise Unavailable(
                f"`{' '.join(install)}` failed (exit {result.returncode}; apt-get update exit "
                f"{update.returncode}): {(update.stderr + result.stderr).strip()[-800:]}"
            )
    if missing_programs():
        raise Unavailable(f"installed {PACKAGES} but {missing_programs()} are still missing")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env() -> dict[str, str]:
    """The environment for SLURM clients: nothing inherited from an enclosing SLURM job."""
    return {
        k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_"))
    }


def wait_for(condition, timeout: float, what: str, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


class LocalCluster:
    """Start with LocalCluster.start(); stop() always, also after a failed start."""

    def __init__(self) -> None:
        self.root: Path | None = None
        self.procs: dict[str, subprocess.Popen] = {}
        self.written: list[Path] = []
        self._lock = None

    # -- life cycle ---------------------------------------------------------------------

    @classmethod
    def start(cls, cpus: int | None = None, memory_mb: int | None = None, lock_timeout: float = 1800) -> "LocalCluster":
        ensure_installed()
        cluster = cls()
        try:
            cluster._acquire_lock(lock_timeout)
            cluster._start(cpus, memory_mb)
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def _acquire_lock(self, timeout: float) -> None:
        self._lock = open(LOCK, "w")
        wait_for(lambda: self._try_lock(), timeout, f"the lock {LOCK} (another SLURM test is running)", 2)

    def _try_lock(self) -> bool:
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _start(self, cpus: int | None, memory_mb: int | None) -> None:
        for name in ["slurm.conf", "gres.conf"]:
            path = ETC / name
            if path.exists() and not path.read_text().startswith(MARKER):
                raise Unavailable(
                    f"{path} exists and was not written by this test (a real SLURM installation?); not touching it"
                )
        root = self.root = Path(tempfile.mkdtemp(prefix="comir-slurm-", dir="/tmp"))
        root.chmod(0o755)
        modes = [("etc", 0o700), ("run", 0o755), ("log", 0o755), ("state", 0o700), ("spool", 0o755), ("lib", 0o700)]
        for sub, mode in modes:
            (root / sub).mkdir(mode=mode)
        key = root / "etc" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        os.mknod(root / "fakegpu0", 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # like /dev/null

        socket_path = root / "run" / "munge.socket"
        self._daemon(
            "munged",
            ["munged", "-F", f"--socket={socket_path}", f"--key-file={key}", f"--log-file={root}/log/munged.log",
             f"--pid-file={root}/run/munged.pid", f"--seed-file={root}/lib/munged.seed"],
        )
        wait_for(socket_path.exists, 20, "the munge socket")
        self._check_alive()

        host = socket.gethostname().split(".")[0]
        meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        physical_mb = int(meminfo["MemTotal"].split()[0]) // 1024
        values = dict(
            host=host,
            root=root,
            ctld_port=free_port(),
            slurmd_port=free_port(),
            cpus=cpus or max(4, 2 * (os.cpu_count() or 1)),
            memory_mb=memory_mb or max(32768, int(physical_mb * 0.9)),
        )
        ETC.mkdir(exist_ok=True)
        for name in ["slurm.conf", "gres.conf"]:
            text = (HERE / f"{name}.in").read_text().format(**values)
            assert text.startswith(MARKER)
            (ETC / name).write_text(text)
            self.written.append(ETC / name)

        self._daemon("slurmctld", ["slurmctld", "-D"])
        time.sleep(1)
        self._daemon("slurmd", ["slurmd", "-D", "-N", host])
        wait_for(self._idle, 90, "sinfo to show the node idle", 1)

    def _daemon(self, name: str, cmd: list[str]) -> None:
        log = open(self.root / "log" / f"{name}.out", "w")
        self.procs[name] = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, env=clean_env()
        )
        log.close()

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.logs()}")

    def _idle(self) -> bool:
        self._check_alive()
        result = run(["sinfo", "-h", "-o", "%T"], env=clean_env(), timeout=30)
        return result.returncode == 0 and result.stdout.split() == ["idle"]

    def stop(self, keep_logs: Path | None = None) -> None:
        """Cancel jobs, end the daemons this object started, remove every file it wrote."""
        try:
            if self.procs.get("slurmctld") is not None and self.procs["slurmctld"].poll() is None:
                jobs = run(["squeue", "-h", "-o", "%i"], env=clean_env(), timeout=30).stdout.split()
                if jobs:
                    run(["scancel", *jobs], env=clean_env(), timeout=30)
                    time.sleep(2)
            for name in ["slurmd", "slurmctld", "munged"]:
                proc = self.procs.get(name)
                if proc is None or proc.poll() is not None:
                    continue
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
        finally:
            for path in self.written:
                if path.exists() and path.read_text().startswith(MARKER):
                    path.unlink()
            if self.root is not None:
                if keep_logs is not None and (self.root / "log").is_dir():
                    shutil.copytree(self.root / "log", keep_logs, dirs_exist_ok=True)
                shutil.rmtree(self.root, ignore_errors=True)
            if self._lock is not None:
                self._lock.close()  # releases the flock
                self._lock = None

    # -- queries ---------------------------------------------------------------------------

    def jobs(self) -> list[dict[str, str]]:
        """Every job this cluster has seen (finished ones for MinJobAge): id, state, comment, name."""
        result = run(["squeue", "-h", "-t", "all", "-o", "%i|%T|%k|%j"], env=clean_env(), timeout=30)
        assert result.returncode == 0, result.stderr
        rows = [line.split("|", 3) for line in result.stdout.splitlines() if line.strip()]
        return [dict(id=r[0], state=r[1], comment=r[2], name=r[3]) for r in rows]

    def logs(self) -> str:
        if self.root is None:
            return ""
        parts = []
        for path in sorted((self.root / "log").glob("*")):
            parts.append(f"--- {path.name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-15:]))
        return "\n".join(parts)


def main() -> int:
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    try:
        cluster = LocalCluster.start()
    except Unavailable as error:
        print(f"cannot start a SLURM test cluster: {error}", file=sys.stderr)
        return 1
    try:
        print(f"SLURM test cluster up (state in {cluster.root}); Ctrl-C stops it.", flush=True)
        print(run(["sinfo"], env=clean_env()).stdout, flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
        print("stopped; configuration and state removed.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
