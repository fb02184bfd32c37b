"""A standalone Flink session cluster (one JobManager, N TaskManagers, separate JVMs) run from
the Flink distribution inside the apache-flink wheel, for `zeroscan cluster up|down|status`,
`zeroscan cluster submit` and the cluster tests. Production runs its own cluster; this one
binds to 127.0.0.1 and keeps its logs, pids and lib folder under the state folder.

The wheel keeps `flink-python-*.jar` in `opt/`, so a cluster started from it cannot load the
Python operators. The wheel is left untouched: the cluster's lib folder is assembled under the
state folder (links to the wheel's `lib/*.jar` plus the flink-python jar) and named by
FLINK_LIB_DIR, which the distribution's scripts honour. Plugins (the Prometheus reporter) are
loaded from the wheel's `plugins/`."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
# A pid is only signalled if its command line runs the distribution's start script (before it
# execs the JVM) or entry class of that daemon.
_ENTRY_MARKS = {"jobmanager": (b"jobmanager.sh", b"flink-console.sh", b"StandaloneSessionClusterEntrypoint"),
                "taskmanager": (b"taskmanager.sh", b"flink-console.sh", b"TaskManagerRunner")}


def flink_dist() -> Path:
    """The Flink distribution shipped inside the installed apache-flink wheel."""
    import pyflink

    return Path(pyflink.__file__).resolve().parent


def assemble_lib(dist: Path, lib_dir: Path, extra: list[Path]) -> Path:
    """A lib folder of links to the distribution's lib/*.jar plus `extra` jars (idempotent)."""
    wanted = {jar.name: jar for jar in [*sorted((dist / "lib").glob("*.jar")), *extra]}
    lib_dir.mkdir(parents=True, exist_ok=True)
    for old in lib_dir.iterdir():
        if old.name not in wanted or not old.is_symlink() or old.readlink() != wanted[old.name]:
            old.unlink()
    for name, jar in wanted.items():
        if not (lib_dir / name).is_symlink():
            (lib_dir / name).symlink_to(jar)
    return lib_dir


def prometheus_reporter_jars(dist: Path) -> list[Path]:
    return sorted((dist / "plugins" / "metrics-prometheus").glob("*.jar"))


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    pids: dict[str, int]
    rest_url: str
    taskmanagers: int | None
    slots_total: int | None
    jobs_running: int | None

    @property
    def running(self) -> bool:
        return self.taskmanagers is not None

    def describe(self) -> str:
        procs = ", ".join(f"{name} pid {pid}" for name, pid in sorted(self.pids.items())) or "no processes"
        if not self.running:
            return f"flink cluster not answering at {self.rest_url} ({procs})"
        return (f"flink cluster up: web UI {self.rest_url}, {self.taskmanagers} TaskManagers, "
                f"{self.slots_total} slots, {self.jobs_running} jobs running ({procs})")


class FlinkCluster:
    """Owns one session cluster's processes, logs and lib folder under `home`."""

    def __init__(self, home: Path, conf_dir: Path, *, taskmanagers: int = 2, rest_port: int = 8081,
                 rpc_port: int = 6123, dist: Path | None = None, dynamic: dict[str, str] | None = None):
        if taskmanagers < 1:
            raise ValueError(f"a cluster needs at least one TaskManager, got {taskmanagers}")
        self.home = home
        self.conf_dir = conf_dir
        self.taskmanagers = taskmanagers
        self.rest_port = rest_port
        self.rpc_port = rpc_port
        self.dist = dist or flink_dist()
        self.dynamic = dict(dynamic or {})
        self.lib_dir = home / "lib"
        self.log_dir = home / "logs"
        self.pid_dir = home / "pids"
        self._procs: list[subprocess.Popen] = []  # the daemons this object started, reaped in down()

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def address(self) -> str:
        """What `flink run -m` takes."""
        return f"127.0.0.1:{self.rest_port}"

    def _assemble_lib(self) -> None:
        pyjars = sorted((self.dist / "opt").glob("flink-python-*.jar"))
        if len(pyjars) != 1:
            raise RuntimeError(f"expected one flink-python jar in {self.dist / 'opt'}, found {len(pyjars)}")
        assemble_lib(self.dist, self.lib_dir, pyjars)

    def env(self) -> dict[str, str]:
        """Environment for the distribution's scripts (daemons and the `flink` client)."""
        return {**os.environ, "FLINK_CONF_DIR": str(self.conf_dir), "FLINK_LIB_DIR": str(self.lib_dir),
                "FLINK_PLUGINS_DIR": str(self.dist / "plugins"), "FLINK_OPT_DIR": str(self.dist / "opt"),
                "FLINK_LOG_DIR": str(self.log_dir), "FLINK_PID_DIR": str(self.pid_dir)}

    def _dynamic_args(self) -> list[str]:
        props = {"rest.port": str(self.rest_port), "jobmanager.rpc.port": str(self.rpc_port), **self.dynamic}
        return [a for k, v in props.items() for a in ("-D", f"{k}={v}")]

    def _pid_file(self, name: str) -> Path:
        return self.pid_dir / f"zeroscan-{name}.pid"

    def _alive(self, name: str) -> int | None:
        try:
            pid = int(self._pid_file(name).read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if not cmdline:  # a zombie, or (read mid-exec, as the start script execs its next stage) alive
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
                return None if state in ("Z", "X") else pid
        except (FileNotFoundError, IndexError):
            return None
        return pid if any(m in cmdline for m in _ENTRY_MARKS[name.split("-")[0]]) else None

    def _names(self) -> list[str]:
        return ["jobmanager", *(f"taskmanager-{i}" for i in range(1, self.taskmanagers + 1))]

    def _start(self, name: str) -> int:
        script = "jobmanager.sh" if name == "jobmanager" else "taskmanager.sh"
        env = {**self.env(), "FLINK_IDENT_STRING": f"zeroscan-{name}", "STD_REDIRECT_TO_FILE": "true"}
        proc = subprocess.Popen([str(self.dist / "bin" / script), "start-foreground", *self._dynamic_args()],
                                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        self._procs.append(proc)
        self._pid_file(name).write_text(str(proc.pid))
        return proc.pid

    def pids(self) -> dict[str, int]:
        return {n: p for n in self._names() if (p := self._alive(n)) is not None}

    def status(self) -> ClusterStatus:
        try:
            ov = self.rest("/overview", timeout_s=2)
        except (OSError, ValueError):
            return ClusterStatus(self.pids(), self.rest_url, None, None, None)
        return ClusterStatus(self.pids(), self.rest_url, ov["taskmanagers"], ov["slots-total"], ov["jobs-running"])

    def rest(self, path: str, *, method: str = "GET", timeout_s: float = 10) -> dict:
        req = urllib.request.Request(self.rest_url + path, method=method)
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return json.loads(resp.read() or b"{}")

    def up(self) -> ClusterStatus:
        """Start the daemons that are not running, wait until every TaskManager registered."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        running = self.pids()
        self._assemble_lib()
        for name in self._names():
            if name not in running:
                self._start(name)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            st = self.status()
            missing = set(self._names()) - set(st.pids)
            if missing:
                raise RuntimeError(f"flink {', '.join(sorted(missing))} exited; see {self.log_dir}")
            if st.running and st.taskmanagers >= self.taskmanagers:
                return st
            time.sleep(0.5)
        raise RuntimeError(f"flink cluster not ready within {START_TIMEOUT_S}s; see {self.log_dir}")

    def start_taskmanager(self, name: str) -> int:
        """(Re)start one TaskManager (after a kill), returning its pid."""
        if name not in self._names() or name == "jobmanager":
            raise ValueError(f"no TaskManager named {name!r}; have {self._names()[1:]}")
        return self._start(name)

    def down(self) -> list[str]:
        """Stop the processes this cluster started (SIGTERM, SIGKILL after a grace period)."""
        stopped = []
        for name in reversed(self._names()):
            pid = self._alive(name)
            if pid is None:
                self._pid_file(name).unlink(missing_ok=True)
                continue
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while self._alive(name) == pid and time.monotonic() < deadline:
                self._reap(pid)
                time.sleep(0.2)
            if self._alive(name) == pid:
                os.kill(pid, signal.SIGKILL)
            self._reap(pid)
            self._pid_file(name).unlink(missing_ok=True)
            stopped.append(name)
        for proc in self._procs:  # also those killed from outside (fault tests)
            if proc.poll() is None:
                proc.wait(timeout=STOP_TIMEOUT_S)
        self._procs.clear()
        return stopped

    def _reap(self, pid: int) -> None:
        """Collect an exited daemon's status (through its Popen when this object started it)."""
        for proc in self._procs:
            if proc.pid == pid:
                proc.poll()
                return
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass

    def flink_cmd(self, *args: str) -> list[str]:
        return [str(self.dist / "bin" / "flink"), *args]

    def submit_python(self, script: Path, *, python: str, pyfiles: list[Path], job_args: list[str],
                      env: dict[str, str], timeout_s: float = 300) -> str:
        """`flink run -d -py SCRIPT` against this cluster; returns the job id."""
        self._assemble_lib()  # the client plans the job with the same jars as the cluster
        cmd = self.flink_cmd("run", "-m", self.address, "-d", "-py", str(script),
                             "-pyclientexec", python, "-pyexec", python,
                             "-pyfs", ",".join(str(p) for p in pyfiles), *job_args)
        out = subprocess.run(cmd, env={**self.env(), **env}, capture_output=True, text=True, timeout=timeout_s)
        for line in out.stdout.splitlines():
            if "JobID" in line:
                return line.rsplit(" ", 1)[-1].strip()
        raise RuntimeError(f"flink run failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")

    def jobs(self) -> list[dict]:
        return self.rest("/jobs/overview")["jobs"]

    def cancel(self, job_id: str) -> None:
        self.rest(f"/jobs/{job_id}", method="PATCH")


