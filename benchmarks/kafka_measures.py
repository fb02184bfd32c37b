"""The benchmark's measurements through a real Kafka broker: a plain Python passthrough, the
scanner job end to end, and latency under paced load; CPU and memory of a process tree from
/proc."""
from __future__ import annotations

import dataclasses
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Mapping, NamedTuple

import orjson

from benchmarks.traffic import Mix, Traffic, brand_records
from connectors.kafka_admin import committed_offsets, contract_topics, end_offsets, ensure_topics
from connectors.kafka_broker import KafkaBroker, free_port_pair
from connectors.kafka_client import consumer, producer
from connectors.kafka_io import produce_lines, produce_waiting
from zeroscan.progress import bar
from zeroscan.settings import ROOT, Settings, Topics


# --- a bench's own broker and traffic -------------------------------------------------------

def bench_kafka(name: str, prefix: str) -> tuple[KafkaBroker, Settings]:
    """A fresh broker of the bench's own in `.state/<name>` on free loopback ports, started, and
    settings for it: plaintext, with a consumer group, transactional ids and topics tagged for
    this run. The caller brings the broker down."""
    base = Settings.from_env()
    work = base.state_dir / name
    shutil.rmtree(work, ignore_errors=True)
    broker = KafkaBroker(work, base.jar_dir / "kafka-broker", port=free_port_pair())
    broker.up()
    tag = f"{prefix}{uuid.uuid4().hex[:6]}"
    return broker, dataclasses.replace(base, bootstrap=broker.bootstrap, kafka_properties=(), state_dir=work,
                                       consumer_group=tag, transactional_id_prefix=tag,
                                       topics=Topics.prefixed(f"{tag}-"))


def publish_traffic(settings: Settings, marks: int, mix: Mix, n: int) -> tuple[list[dict], Traffic, list[bytes]]:
    """The contract's topics, a generated catalogue of `marks` word marks on the brands topic, and
    `n` listing updates of `mix` (after a warm-up of its listings) on the listings topic."""
    ensure_topics(settings.kafka, contract_topics(settings.topics, partitions=4))
    brands = brand_records(marks)
    produce_lines(settings.kafka, settings.topics.brands, (orjson.dumps(b) for b in brands), "brand_id")
    traffic = Traffic(brands, mix)
    traffic.warm(max(1000, n // 10))
    lines = list(traffic.lines(n))
    produce_lines(settings.kafka, settings.topics.listings, lines, "listing_id")
    return brands, traffic, lines


def job_settings(settings: Settings, name: str) -> Settings:
    """One job's settings in a bench run: its own consumer group, transactional ids and state
    folder (created), on the run's broker and topics."""
    s = dataclasses.replace(settings, consumer_group=f"{settings.consumer_group}-{name}",
                            transactional_id_prefix=f"{settings.transactional_id_prefix}-{name}",
                            state_dir=settings.state_dir / name)
    s.state_dir.mkdir(parents=True, exist_ok=True)
    return s


# --- CPU accounting through /proc -----------------------------------------------------------

def _tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(d))
            except (OSError, IndexError, ValueError):
                continue
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def storage_read_bytes(pid: int) -> int:
    """The bytes the process tree of `pid` had read from storage (`/proc/<pid>/io` read_bytes:
    page-cache misses, not reads the page cache answered)."""
    total = 0
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/io") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("read_bytes:"))
        except (OSError, StopIteration, ValueError, IndexError):
            continue
    return total


def cpu_seconds(pid: int) -> float:
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError):
            continue
    return total


def task_times(pid: int) -> dict[int, tuple[str, str, float]]:
    """CPU seconds of every thread of the process tree, by thread id: (process name, thread
    name, seconds). Linux cuts thread names at 15 characters (`java_thread_names` has them
    whole)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, tuple[str, str, float]] = {}
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/comm") as f:
                proc = f.read().strip()
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/stat") as f:
                    st = f.read()
                fields = st.rsplit(")", 1)[1].split()
                out[int(t)] = (proc, st[st.index("(") + 1:st.rindex(")")], (int(fields[11]) + int(fields[12])) / tick)
        except (OSError, IndexError, ValueError):
            continue
    return out


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread of the process tree, by process and thread name (numbers in
    thread names folded, but for Flink's operator threads, which the name tells apart)."""
    out: dict[str, float] = {}
    for proc, name, cpu in task_times(pid).values():
        if not name.startswith(("Over", "Source", "Calc", "Python", "Sink")):
            name = re.sub(r"[0-9]+", "#", name)
        key = f"{proc}|{name}"
        out[key] = out.get(key, 0.0) + cpu
    return out


def java_thread_names(pid: int) -> dict[int, str]:
    """The whole names of the process tree's JVM threads by thread id (`jcmd Thread.print`)."""
    names: dict[int, str] = {}
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/comm") as f:
                if f.read().strip() != "java":
                    continue
        except OSError:
            continue
        dump = subprocess.run(["jcmd", str(p), "Thread.print"], capture_output=True, text=True, timeout=60).stdout
        for m in re.finditer(r'^"(.*?)".*?nid=(0x[0-9a-f]+)', dump, re.M):
            names[int(m.group(2), 16)] = m.group(1)
    return names


def thread_role(proc: str, name: str) -> str:
    """What a thread of the job works for: the source step (its chained Java functions), the
    keyed step (the OVER aggregate that keeps the listing's state, with the Java side of the
    crossing into Python chained to it), RocksDB's own threads (flushes, compactions), the JIT
    compilers, the Python workers, or the rest (fetchers, producers, checkpoints, the per-brand
    steps). From a cut name (`/proc`) every OVER aggregate's thread counts as the keyed step;
    from a whole one (`java_thread_names`) only the one chained to the Python scan."""
    if proc.startswith("python"):
        return "python"
    if name.startswith("Source: inputs"):
        return "source"
    if name.startswith("OverAggregate") and ("PythonCalc" in name or " -> " not in name):
        return "keyed_step"
    if "rocksdb" in name.lower():
        return "rocksdb"
    return "jit" if "Compiler" in name else "other"


def rss_mib(pid: int) -> float:
    total = 0
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1])
        except OSError:
            continue
    return total * os.sysconf("SC_PAGE_SIZE") / 2**20


# --- Kafka measurements ---------------------------------------------------------------------

def passthrough_rate(settings: Settings, n: int) -> tuple[float, float]:
    """A Python consume -> produce loop over the listings topic; (per CPU second, wall/s)."""
    c = consumer(settings.kafka, {"group.id": f"passthrough-{uuid.uuid4()}", "auto.offset.reset": "earliest",
                                  "enable.auto.commit": False})
    p = producer(settings.kafka, {"linger.ms": 5})
    c.subscribe([settings.topics.listings])
    got, t0, c0 = 0, None, None
    while got < n:
        msgs = c.consume(1000, timeout=2.0)
        if not msgs:
            continue
        if t0 is None:
            t0, c0 = time.monotonic(), time.process_time()
        for m in msgs:
            if m.error():
                continue
            produce_waiting(p, "bench-passthrough", m.value(), m.key())
            got += 1
        p.poll(0)
    p.flush(30)
    wall, cpu = time.monotonic() - t0, time.process_time() - c0
    c.close()
    return got / cpu, got / wall


def plaintext_env() -> dict[str, str]:
    """This environment for a job on a benchmark's own plaintext broker: a client properties
    file of the caller (ZEROSCAN_KAFKA_CONFIG) does not apply there."""
    return {k: v for k, v in os.environ.items() if k != "ZEROSCAN_KAFKA_CONFIG"}


def _job_env(settings: Settings) -> dict[str, str]:
    # Text path end to end; image throughput has its own benchmark (benchmarks/images.py): the
    # generated image uris point nowhere.
    return {**plaintext_env(), "ZEROSCAN_IMAGES": "off", "ZEROSCAN_BOOTSTRAP": settings.bootstrap, "ZEROSCAN_STATE_DIR": str(settings.state_dir),
            "ZEROSCAN_GROUP": settings.consumer_group, "ZEROSCAN_TXN_PREFIX": settings.transactional_id_prefix,
            "ZEROSCAN_TOPIC_PREFIX": settings.topics.listings[: -len("listings")]}


class JobProcess(subprocess.Popen):
    """A bench job's process, with `reads`: where its Kafka source is reading."""
    reads: "SourceReads"


def start_job(settings: Settings, parallelism: int, log_name: str, checkout: Path = ROOT,
              env: Mapping[str, str] | None = None, module: list[str] | None = None) -> JobProcess:
    """`python -m zeroscan job run` of `checkout` (another checkout's job for a side by side: run
    from its folder, which `-m` puts first on the module path), with `env` added; `module`: run
    `python -m <module...>` instead (another job on the same settings). The job reports its
    source's read offsets to a reporter of its own (`SourceReads`)."""
    job_env = {**_job_env(settings), **({"PYTHONPATH": str(checkout)} if checkout != ROOT else {}), **(env or {})}
    reads = SourceReads(settings.topics.listings)
    job_env["ZEROSCAN_FLINK_OPTS"] = ";".join(filter(None, [job_env.get("ZEROSCAN_FLINK_OPTS", ""), reads.flink_opts()]))
    argv = module or ["zeroscan", "job", "run", "--parallelism", str(parallelism)]
    with open(settings.state_dir / log_name, "wb") as log:
        job = JobProcess([sys.executable, "-m", *argv],
                         cwd=checkout, env=job_env, stdout=log, stderr=subprocess.STDOUT,
                         start_new_session=True)
    job.reads = reads
    return job


class SourceReads:
    """Where a job's Kafka source is reading the listings topic: the sum over its partitions of
    the offset after the record it last handed on (Flink's `KafkaSourceReader...currentOffset`
    gauges, plus one), from a Prometheus reporter of the bench's own that reports only those
    gauges (the job's own reporter renders ~1 MB of every metric per scrape; this one a few
    lines), on a port free on loopback, where the bench reads it (Flink's reporter listens on
    every interface, as the job's own does).

    Why not the committed offsets alone: the source commits a checkpoint's offsets from its
    fetcher thread, after the fetcher's poll of the consumer returns, and that poll waits up to
    10 s when there is nothing to read (flink-connector-kafka 5.0's fixed timeout). So once a job
    has drained a wave, its last commits come up to ~12 s late, and a window that ended on them
    charged the job that long idle (the bench's identical-re-post wave: 12.6 s for a wave the job
    had read in about two). A record the source has handed on has passed the steps chained to
    it; the ones behind the first exchange (the keyed step, the Python scan) hold at most their
    buffers, which are as full at a window's start as at its end once the job is busy."""

    def __init__(self, topic: str):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        # Prometheus label values: Flink's reporter writes any other character as "_".
        self._label = 'topic="' + re.sub(r"[^a-zA-Z0-9:_]", "_", topic) + '"'

    def flink_opts(self) -> str:
        r = "metrics.reporter.zsbenchreads"
        return (f"{r}.factory.class=org.apache.flink.metrics.prometheus.PrometheusReporterFactory;"
                f"{r}.port={self.port};{r}.filter.includes=*:currentOffset:gauge")

    def read(self) -> int | None:
        """The read position, or None while the job reports none (starting, or not reading)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
                body = r.read().decode()
        except OSError:
            return None
        total, seen = 0, False
        for line in body.splitlines():
            if line.startswith("flink_") and "currentOffset" in line and self._label in line:
                seen = True
                total += max(0, int(float(line.rsplit(" ", 1)[1])) + 1)   # -1: nothing read yet
        return total if seen else None


def stop_job(job: subprocess.Popen) -> None:
    """SIGTERM (stop with a savepoint), then kill the whole process group after two minutes."""
    job.send_signal(signal.SIGTERM)
    try:
        job.wait(120)
    except subprocess.TimeoutExpired:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait()


class Mark(NamedTuple):
    """One poll of a running job."""
    t: float           # time.monotonic()
    committed: int     # the job's committed offsets on the listings topic, summed
    cpu: float         # the job tree's CPU seconds
    read: int          # where its source is reading (SourceReads; never below `committed`)


def poll_committed(settings: Settings, job: JobProcess, first: int, last: int, log: str
                   ) -> tuple[list[Mark], float, float]:
    """Poll the job every 0.25 s until `last` is committed: (its marks, peak RSS MiB, start time)."""
    marks: list[Mark] = []
    peak, reported = 0.0, False
    t_start = time.monotonic()
    with bar(last - first, log.removesuffix(".log"), "rec") as shown:  # committed so far (stderr, terminals only)
        while True:
            if job.poll() is not None:
                raise RuntimeError(f"job exited; see {settings.state_dir}/{log}")
            # The time and CPU with the read position; the commits, asked of the broker after them,
            # only fall further behind. A scrape that fails keeps the last position read.
            read, t, cpu = job.reads.read(), time.monotonic(), cpu_seconds(job.pid)
            reported |= read is not None
            done = sum(committed_offsets(settings.kafka, settings.consumer_group, settings.topics.listings).values())
            last_read = marks[-1].read if marks else 0
            marks.append(Mark(t, done, cpu, max(done, last_read if read is None else read)))
            peak = max(peak, rss_mib(job.pid))
            shown.update(max(0, min(done, last) - first - shown.n))
            if done >= last:
                break
            if time.monotonic() - t_start > 1800:
                raise RuntimeError("job too slow: over 30 min")
            time.sleep(0.25)
    if last > first and not reported:   # windows would fall back to the late commits unseen
        raise RuntimeError(f"the job reported no source offsets on port {job.reads.port}; see {settings.state_dir}/{log}")
    return marks, peak, t_start


def window(marks: list[Mark], first: int, last: int, lo: float = 0.1, hi: float = 0.9) -> tuple[Mark, Mark]:
    """The last poll at or below `lo` and the first at or above `hi` of the way from `first` to
    `last`, by where the job's source is reading (`SourceReads`)."""
    span = last - first
    a = [m for m in marks if m.read <= first + lo * span][-1]
    b = next(m for m in marks if m.read >= first + hi * span)
    return a, b


def _measure(settings: Settings, job: JobProcess, first: int, last: int, log: str) -> tuple[dict, float]:
    """Poll the job until `last` is committed; rates between 10 % and 90 % of the way from
    `first`, by where its source reads."""
    marks, peak, t_start = poll_committed(settings, job, first, last, log)
    a, b = window(marks, first, last)
    return {**window_rates(a, b, peak), "by_commits": by_commits(marks, first, last)}, a.t - t_start


def by_commits(marks: list[Mark], first: int, last: int, wave: bool = False) -> dict:
    """What a window on the committed offsets gave over the same polls (the bench's windows
    until the read positions: from the last poll at or below 10 % committed, or for a `wave`
    from the mark before its production, to the first at or above 90 %), and how much later
    than the read position's 90 % the commits showed it."""
    span = last - first
    a = marks[0] if wave else [m for m in marks if m.committed <= first + 0.1 * span][-1]
    b = next(m for m in marks if m.committed >= first + 0.9 * span)
    read_b = next(m for m in marks if m.read >= first + 0.9 * span)
    return {"listings_per_cpu_s": round((b.committed - a.committed) / (b.cpu - a.cpu)), "wall_s": round(b.t - a.t, 2),
            "lag_s": round(b.t - read_b.t, 2)}


def window_rates(a: Mark, b: Mark, peak: float) -> dict:
    """The rates between two polls: the records the source read between them, per wall and CPU second."""
    n, wall, cpu = b.read - a.read, b.t - a.t, b.cpu - a.cpu
    return {"listings": n, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "listings_per_s": round(n / wall),
            "listings_per_cpu_s": round(n / cpu), "cores_busy": round(cpu / wall, 2), "peak_rss_mib": round(peak)}


def e2e(settings: Settings, parallelism: int, total: int) -> dict:
    """Start the job on a topic already holding `total` updates; measure between 10 % and 90 %
    read (start-up excluded)."""
    log = f"bench-job-p{parallelism}.log"
    job = start_job(settings, parallelism, log)
    try:
        r, startup = _measure(settings, job, 0, total, log)
    finally:
        stop_job(job)
    return {"parallelism": parallelism, **r, "startup_s": round(startup, 1)}


def idle_cores(job: subprocess.Popen, seconds: float) -> float:
    """The job tree's CPU per wall second while it has nothing to read: its fixed cost per unit
    of time (checkpoints, timers, polls), which a job that is never idle spreads over more records."""
    t0, c0 = time.monotonic(), cpu_seconds(job.pid)
    time.sleep(seconds)
    return round((cpu_seconds(job.pid) - c0) / (time.monotonic() - t0), 3)


def marginal_us(rates: dict, idle: float) -> float:
    """Per record, in µs, of the CPU above the idle cost over the same wall time."""
    return round((rates["cpu_s"] - idle * rates["wall_s"]) / rates["listings"] * 1e6, 1)


def measure_wave(settings: Settings, job: JobProcess, base: int, wave: list[bytes], log: str) -> dict:
    """Produce `wave` after the `base` records the job has committed and poll until it is all
    committed; its rates between 10 % and 90 % of it read, as in `_measure` (a mark taken just
    before the wave is produced stands for its start, where a job that keeps up with the
    producer is past 10 % at its first poll)."""
    start = Mark(time.monotonic(), base, cpu_seconds(job.pid), base)
    produce_lines(settings.kafka, settings.topics.listings, wave, "listing_id")
    marks, peak, _ = poll_committed(settings, job, base, base + len(wave), log)
    marks = [start] + marks
    return {**window_rates(*window(marks, base, base + len(wave)), peak), "window": "read 10..90 %",
            "by_commits": by_commits(marks, base, base + len(wave), wave=True)}


def fast_path_e2e(settings: Settings, waves: list[list[bytes]], idle_s: float = 0.0,
                  module: list[str] | None = None) -> list[dict]:
    """The job reads everything already on the topic (so its memo knows that content), then
    each wave of re-posts is produced and measured on its own, in turn, by the same job
    (`measure_wave`). With `idle_s`, the job's idle cost is measured that long before the first
    wave, and each wave's CPU above it too."""
    base = sum(end_offsets(settings.kafka, settings.topics.listings).values())
    log = "bench-job-fastpath.log"
    job = start_job(settings, 1, log, module=module)
    out = []
    try:
        _measure(settings, job, 0, base, log)
        idle = idle_cores(job, idle_s) if idle_s else None
        for wave in waves:
            r = measure_wave(settings, job, base, wave, log)
            if idle is not None:
                r.update(idle_cores=idle, marginal_us=marginal_us(r, idle))
            out.append(r)
            base += len(wave)
    finally:
        stop_job(job)
    return out


def latency(settings: Settings, rate: float, seconds: float, traffic: Traffic) -> dict:
    """Paced load at `rate`/s; event time = send time; latency = read_committed arrival of the
    decision minus its listing's event time."""
    job = start_job(settings, 1, "bench-job-latency.log")
    try:
        time.sleep(5)
        target = sum(end_offsets(settings.kafka, settings.topics.listings).values())
        while sum(committed_offsets(settings.kafka, settings.consumer_group,
                                    settings.topics.listings).values()) < target:
            if job.poll() is not None:
                raise RuntimeError("latency job exited")
            time.sleep(0.5)
        sent: dict[str, int] = {}
        lat: list[float] = []
        stop = threading.Event()

        def reader():
            from confluent_kafka import OFFSET_BEGINNING, TopicPartition

            c = consumer(settings.kafka, {"group.id": f"lat-{uuid.uuid4()}", "isolation.level": "read_committed",
                                          "enable.auto.commit": False})
            parts = c.list_topics(settings.topics.decisions, timeout=10).topics[settings.topics.decisions].partitions
            c.assign([TopicPartition(settings.topics.decisions, p, OFFSET_BEGINNING) for p in parts])
            while not stop.is_set():
                m = c.poll(0.2)
                if m is None or m.error():
                    continue
                d = orjson.loads(m.value())
                t = sent.get(d["listing_id"])
                if t is not None and d.get("decided_at", 0) >= t:
                    lat.append(time.time() - t / 1000)
            c.close()

        th = threading.Thread(target=reader, daemon=True)
        th.start()
        p = producer(settings.kafka, {"linger.ms": 5})
        t0 = time.monotonic()
        i = 0
        while time.monotonic() - t0 < seconds:
            due = int((time.monotonic() - t0) * rate)
            while i < due:
                rec = traffic.next()
                now = int(time.time() * 1000)
                rec["event_time"] = now
                sent[rec["listing_id"]] = now
                p.produce(settings.topics.listings, orjson.dumps(rec), rec["listing_id"].encode())
                i += 1
            p.poll(0)
            time.sleep(0.01)
        p.flush(30)
        time.sleep(10)
        stop.set()
        th.join(10)
    finally:
        stop_job(job)
    lat.sort()
    q = (lambda f: round(lat[min(len(lat) - 1, int(f * len(lat)))], 2)) if lat else (lambda f: None)
    return {"rate_per_s": round(rate), "seconds": seconds, "decisions_timed": len(lat), "p50_s": q(0.5),
            "p99_s": q(0.99)}


