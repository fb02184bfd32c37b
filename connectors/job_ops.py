"""What an operator asks of a running scanner job, from Kafka and Flink's REST API: consumer lag
per partition (the job's committed offsets against the end offsets), the last completed
checkpoint, failed checkpoints and restarts (`zeroscan job status`), and the job's Prometheus
metrics as scraped (tests check the dashboard's and alerts' metric names against a live scrape)."""
from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from connectors.kafka_admin import committed_offsets, end_offsets

# Where `job run` and `cluster submit` record the job they started, for `job status`.
JOB_FILE = "job.json"
# The embedded job's web UI binds the first free port here (cluster: ZEROSCAN_FLINK_REST_PORT);
# kept apart from 8081 so a dev cluster and an embedded job can run side by side.
EMBEDDED_REST_PORTS = range(8090, 8100)
_LIVE = ("CREATED", "INITIALIZING", "RUNNING", "RESTARTING", "RECONCILING")


def arm_exit_deadline(seconds: float) -> None:
    """End this process `seconds` from now if it is still running then: the stacks of all its
    threads go to stderr and it exits with status 1 (faulthandler, from a C thread: it works
    while Python code or a Java call is stuck, and during the interpreter's own exit). A job's
    gateway JVM, whose stdin is this process's pipe, ends with it."""
    import faulthandler

    faulthandler.dump_traceback_later(seconds, exit=True)


def rest_get(base: str, path: str, timeout_s: float = 5) -> dict:
    with urllib.request.urlopen(base + path, timeout=timeout_s) as resp:
        return json.loads(resp.read() or b"{}")


def find_web_ui(job_id: str, ports=EMBEDDED_REST_PORTS, timeout_s: float = 30) -> str | None:
    """The REST/web UI address that knows `job_id` (the embedded mini-cluster's port is the first
    free one of a range)."""
    deadline = time.monotonic() + timeout_s
    while True:
        for port in ports:
            base = f"http://127.0.0.1:{port}"
            try:
                rest_get(base, f"/jobs/{job_id}", timeout_s=1)
                return base
            except (OSError, ValueError):
                continue
        if time.monotonic() > deadline:
            return None
        time.sleep(1)


def record_job(state_dir: Path, job_id: str, web_ui: str | None) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / JOB_FILE).write_text(json.dumps({"job_id": job_id, "web_ui": web_ui}))


def recorded_job(state_dir: Path) -> dict | None:
    try:
        return json.loads((state_dir / JOB_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int
    end: int

    @property
    def lag(self) -> int:
        return max(0, self.end - self.committed)


@dataclass(frozen=True, slots=True)
class JobStatus:
    job_id: str
    web_ui: str
    state: str
    restarts: int | None
    checkpoints_completed: int
    checkpoints_failed: int
    last_checkpoint_id: int | None
    last_checkpoint_at_ms: int | None
    last_checkpoint_path: str | None
    lags: tuple[PartitionLag, ...]

    @property
    def total_lag(self) -> int:
        return sum(p.lag for p in self.lags)

    def describe(self, now_ms: int) -> str:
        lines = [f"job {self.job_id}: {self.state}; web UI {self.web_ui}",
                 f"restarts: {self.restarts if self.restarts is not None else 'unknown'}"]
        if self.last_checkpoint_id is None:
            lines.append(f"checkpoints: none completed yet ({self.checkpoints_failed} failed)")
        else:
            age = (now_ms - self.last_checkpoint_at_ms) / 1000 if self.last_checkpoint_at_ms else float("nan")
            lines.append(f"last completed checkpoint: #{self.last_checkpoint_id}, {age:.1f}s ago, "
                         f"{self.last_checkpoint_path} ({self.checkpoints_completed} completed, "
                         f"{self.checkpoints_failed} failed)")
        lines.append(f"consumer lag: {self.total_lag} records")
        lines += [f"  {p.topic}[{p.partition}] committed {p.committed} end {p.end} lag {p.lag}" for p in self.lags]
        return "\n".join(lines)


def running_job_id(web_ui: str) -> str | None:
    jobs = [j for j in rest_get(web_ui, "/jobs/overview")["jobs"] if j["state"] in _LIVE]
    return jobs[0]["jid"] if len(jobs) == 1 else None


def job_status(web_ui: str, job_id: str, bootstrap: str, group: str, topics: list[str]) -> JobStatus:
    job = rest_get(web_ui, f"/jobs/{job_id}")
    cps = rest_get(web_ui, f"/jobs/{job_id}/checkpoints")
    done = (cps.get("latest") or {}).get("completed") or {}
    counts = cps.get("counts") or {}
    metric = rest_get(web_ui, f"/jobs/{job_id}/metrics?get=numRestarts")
    restarts = int(float(metric[0]["value"])) if metric else None
    lags = []
    for topic in topics:
        ends = end_offsets(bootstrap, topic)
        committed = committed_offsets(bootstrap, group, topic)
        lags += [PartitionLag(topic, p, committed.get(p, 0), e) for p, e in sorted(ends.items())]
    return JobStatus(job_id, web_ui, job["state"], restarts, int(counts.get("completed", 0)),
                     int(counts.get("failed", 0)), done.get("id"), done.get("latest_ack_timestamp"),
                     done.get("external_path"), tuple(lags))


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def scrape(port: int, timeout_s: float = 3) -> dict[str, list[tuple[str, float]]]:
    """One Prometheus endpoint on 127.0.0.1: metric name -> [(labels, value)]."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout_s) as resp:
        text = resp.read().decode()
    out: dict[str, list[tuple[str, float]]] = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m and not line.startswith("#"):
            try:
                value = float(m.group(3))
            except ValueError:
                continue
            out.setdefault(m.group(1), []).append((m.group(2) or "", value))
    return out


def scrape_all(ports) -> dict[int, dict[str, list[tuple[str, float]]]]:
    found = {}
    for port in ports:
        try:
            found[port] = scrape(port)
        except (OSError, urllib.error.URLError):
            continue
    return found
