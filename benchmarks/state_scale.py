"""A listing update's cost against the job's state: the same job, the same kinds of update,
with a small and a large number of live listings in its keyed state. A marketplace's job holds
every live listing (its last fingerprint, the kept record for judging feedback, its brands'
flag state) for as long as the listing lives, so what an update costs when that state no
longer fits in memory is what a deployment pays, not what a bench that starts empty measures.

For each catalogue size (`--live`), each variant (NAME=FLINK_OPTS, '' for the job as
configured; alternating, the order reversed every other round) and each round: fresh topics
holding one record of each of the live listings (all new to the job), the job started and left
to read them, then `--waves` waves of `--wave` updates of the mix (benchmarks.traffic
`Traffic.sampled_wave`: listings drawn at random over the whole state, so its reads land
everywhere) produced and measured one at a time, each between 10 % and 90 % of it read, as
`make bench` measures its spaced waves. Per wave also the CPU per record of the job's threads
by role (`/proc` task times, the names whole from `jcmd`; `kafka_measures.thread_role`): the
keyed step (the OVER aggregate that keeps the state, chained with the Java side of the crossing
into Python), RocksDB's own threads (flushes, compactions), the Python workers, the source
step, the JIT compilers. And the disk the state takes: the job's RocksDB working folder
(`state.backend.rocksdb.localdir`, its own per run) sampled every half second, its peak and its
size at each wave's end, beside the retained checkpoints' size; the peak against the size at a
wave's end is the compaction style's space amplification as this traffic drives it; and the
bytes RocksDB wrote into SST files in the waves (flushes and compactions, from its own log's
`table_file_creation` events): its write amplification, and an upper bound of what the
incremental checkpoints had to upload.

    .venv/bin/python -m benchmarks.state_scale [--live 50000,1000000] [--wave 40000] [--waves 4]
        [--rounds 2] [NAME=FLINK_OPTS ...]

In FLINK_OPTS, `{state}` stands for the run's own state folder (for options that need a path,
e.g. `state.changelog.dstl.dfs.base-path=file://{state}/changelog`).
`bench.evict-every=S` in a variant's options (taken out before the job sees them) drops the
state's SST files from the page cache every S seconds (`posix_fadvise(DONTNEED)`), so that reads
RocksDB's cache misses go to the disk as they do when the state is many times larger than the
machine's memory; each wave then also reports the bytes the job read from storage and its
rate per wall second.

Writes benchmarks/results/state_scale.json (or --out). One broker; images off, as in every
end-to-end bench.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import re
import shutil
import statistics
import sys
import threading
import uuid
from pathlib import Path

import orjson

from benchmarks.kafka_measures import (_measure, bench_kafka, java_thread_names, job_settings, measure_wave, start_job,
                                       stop_job, storage_read_bytes, task_times, thread_role)
from benchmarks.traffic import Mix, Traffic, brand_records
from connectors.kafka_admin import contract_topics, end_offsets, ensure_topics
from connectors.kafka_client import admin
from connectors.kafka_io import produce_lines
from zeroscan.settings import ROOT, Topics

RESULTS = ROOT / "benchmarks" / "results" / "state_scale.json"
MARKS = 1000
LOG = "bench-job-state.log"


ROLES = ("keyed_step", "rocksdb", "python", "source", "jit", "other")


def roles(before: dict[int, tuple[str, str, float]], after: dict[int, tuple[str, str, float]],
          names: dict[int, str]) -> dict[str, float]:
    """CPU seconds between two `task_times` readings by `thread_role`, from the threads' whole
    names where `names` has them."""
    out = dict.fromkeys(ROLES, 0.0)
    for tid, (proc, name, cpu) in after.items():
        out[thread_role(proc, names.get(tid, name))] += cpu - before.get(tid, (proc, name, 0.0))[2]
    return out


def disk_mib(path: Path) -> float:
    """The size of the files under `path`; files and folders that go while it is read (RocksDB
    deletes what a compaction replaced) are skipped."""
    total = 0
    for folder, _dirs, files in os.walk(path):   # errors (a folder gone) are skipped
        for f in files:
            try:
                total += os.stat(os.path.join(folder, f)).st_size
            except OSError:
                continue
    return round(total / 2**20, 1)


SST_CREATED = re.compile(rb'"event": "table_file_creation".*?"file_size": (\d+)')


def sst_written_mib(logs: Path) -> float:
    """The bytes of every SST file RocksDB's logs in `logs` tell it created (one log per RocksDB
    instance, named after its folder; `state.backend.rocksdb.log.dir`)."""
    total = 0
    for log in logs.glob("*_LOG*"):
        try:
            total += sum(int(m) for m in SST_CREATED.findall(log.read_bytes()))
        except OSError:
            continue
    return round(total / 2**20, 1)


def bench_options(opts: str) -> tuple[str, dict[str, str]]:
    """A variant's options split into Flink's and the bench's own (`bench.*`)."""
    flink, own = [], {}
    for item in filter(None, opts.split(";")):
        key, _, value = item.partition("=")
        if key.startswith("bench."):
            own[key] = value
        else:
            flink.append(item)
    return ";".join(flink), own


class Periodic:
    """`tick()` every `every_s` in a daemon thread, from `start()` to `stop()`."""

    def __init__(self, every_s: float, name: str):
        self.every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def tick(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.tick()

    def start(self):
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


class PageCacheEvictor(Periodic):
    """Drops the page cache of every SST file under `path` (clean pages only: SST files are
    written once) at each tick; `passes` counts them."""

    def __init__(self, path: Path, every_s: float):
        super().__init__(every_s, "evict")
        self.path, self.passes = path, 0

    def tick(self) -> None:
        for folder, _dirs, files in os.walk(self.path):
            for f in files:
                if f.endswith(".sst"):
                    try:
                        fd = os.open(os.path.join(folder, f), os.O_RDONLY)
                    except OSError:
                        continue
                    try:
                        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                    finally:
                        os.close(fd)
        self.passes += 1


class DiskPeak(Periodic):
    """The largest size `disk_mib` read of a folder at its ticks; `take()` gives the peak since
    the last take and starts the next window."""

    def __init__(self, path: Path, every_s: float = 0.5):
        super().__init__(every_s, "disk-peak")
        self.path, self.peak = path, 0.0

    def tick(self) -> None:
        self.peak = max(self.peak, disk_mib(self.path))

    def take(self) -> float:
        peak, self.peak = max(self.peak, disk_mib(self.path)), 0.0
        return peak


def one_run(settings, live: int, wave: int, waves: int, name: str, opts: str, tag: str) -> dict:
    st = dataclasses.replace(settings, topics=Topics.prefixed(f"{tag}-"), consumer_group=tag, transactional_id_prefix=tag)
    ensure_topics(st.kafka, contract_topics(st.topics, partitions=4))
    brands = brand_records(MARKS)
    produce_lines(st.kafka, st.topics.brands, (orjson.dumps(b) for b in brands), "brand_id")
    traffic = Traffic(brands, Mix())
    traffic.warm(live)
    produce_lines(st.kafka, st.topics.listings, traffic.first_records(), "listing_id")
    s = job_settings(st, name)
    base = sum(end_offsets(s.kafka, s.topics.listings).values())
    local = s.state_dir / "rocksdb"
    flink_opts, own = bench_options(opts)
    logs = s.state_dir / "rocksdb-logs"      # RocksDB's own logs, read for the SST bytes written
    logs.mkdir(parents=True, exist_ok=True)
    job_opts = ";".join(filter(None, [flink_opts.replace("{state}", str(s.state_dir)),
                                      f"state.backend.rocksdb.localdir={local}",
                                      f"state.backend.rocksdb.log.dir={logs}"]))
    job = start_job(s, 1, LOG, env={"ZEROSCAN_FLINK_OPTS": job_opts})
    disk = DiskPeak(local).start()
    evict = PageCacheEvictor(local, float(own["bench.evict-every"])) if "bench.evict-every" in own else None
    out: dict = {"variant": name, "flink_opts": opts, "live": live}
    try:
        first, _ = _measure(s, job, 0, base, LOG)
        out["first_read"] = {k: first[k] for k in ("listings", "listings_per_cpu_s")}
        out["first_read"]["local_peak_mib"] = disk.take()
        written = sst_written_mib(logs)
        out["first_read"]["sst_written_mib"] = written
        out["waves"] = []
        names = java_thread_names(job.pid)   # the job's threads are all running by now
        if evict is not None:
            evict.start()
        for _ in range(waves):
            records = traffic.sampled_wave(wave)
            c0, read0 = task_times(job.pid), storage_read_bytes(job.pid)
            r = measure_wave(s, job, base, records, LOG)
            c1, read1 = task_times(job.pid), storage_read_bytes(job.pid)
            base += len(records)
            by_role = roles(c0, c1, names)
            now_written = sst_written_mib(logs)
            out["waves"].append({"records": len(records), "listings_per_cpu_s": r["listings_per_cpu_s"],
                                 "us_per_record": {k: round(v / len(records) * 1e6, 1) for k, v in by_role.items()},
                                 "us_all_threads": round(sum(by_role.values()) / len(records) * 1e6, 1),
                                 "listings_per_s": r["listings_per_s"], "cores_busy": r["cores_busy"],
                                 "storage_read_kib_per_record": round((read1 - read0) / len(records) / 1024, 2),
                                 "sst_written_mib": round(now_written - written, 1),
                                 "checkpoint_mib": disk_mib(s.state_dir / "checkpoints"),
                                 "changelog_mib": disk_mib(s.state_dir / "changelog"),
                                 "local_peak_mib": disk.take(), "local_end_mib": disk_mib(local)})
            written = now_written
    finally:
        if evict is not None:
            evict.stop()
        disk.stop()
        stop_job(job)
        # A million listings' topic and checkpoints are a few GB: gone before the next run.
        client = admin(st.kafka)   # held until its futures are done
        for f in client.delete_topics(list(contract_topics(st.topics)), operation_timeout=30).values():
            f.result()
        shutil.rmtree(s.state_dir / "checkpoints", ignore_errors=True)
        shutil.rmtree(local, ignore_errors=True)
        shutil.rmtree(s.state_dir / "changelog", ignore_errors=True)
        shutil.rmtree(logs, ignore_errors=True)
    w = out["waves"]
    out["us_per_record"] = round(statistics.mean(1e6 / x["listings_per_cpu_s"] for x in w), 1)
    out["keyed_step_us"] = round(statistics.mean(x["us_per_record"]["keyed_step"] for x in w), 1)
    out["rocksdb_us"] = round(statistics.mean(x["us_per_record"]["rocksdb"] for x in w), 1)
    out["listings_per_s"] = round(statistics.mean(x["listings_per_s"] for x in w))
    out["storage_read_kib_per_record"] = round(statistics.mean(x["storage_read_kib_per_record"] for x in w), 2)
    # The job's threads over each whole wave, from its first record produced to its last
    # committed: the compactions a wave sets off mostly run in it (or in the next), where the
    # window of 10-90 % read may or may not hold them.
    out["all_threads_us"] = round(statistics.mean(x["us_all_threads"] for x in w), 1)
    out["sst_written_mib"] = round(sum(x["sst_written_mib"] for x in w), 1)
    out["local_peak_mib"] = max(x["local_peak_mib"] for x in w)
    out["local_end_mib"] = w[-1]["local_end_mib"]
    out["checkpoint_mib"] = w[-1]["checkpoint_mib"]
    return out


# What each run reports for the summary and the line printed after it, in this order.
SUMMARY = ("us_per_record", "keyed_step_us", "rocksdb_us", "all_threads_us", "listings_per_s",
           "storage_read_kib_per_record", "sst_written_mib", "local_peak_mib", "local_end_mib", "checkpoint_mib")


def summary(runs: list[dict]) -> list[dict]:
    rows = []
    for live in sorted({r["live"] for r in runs}):
        for name in dict.fromkeys(r["variant"] for r in runs):
            sel = [r for r in runs if r["live"] == live and r["variant"] == name]
            if sel:
                rows.append({"live": live, "variant": name, **{k: [r[k] for r in sel] for k in SUMMARY}})
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("variants", nargs="*", metavar="NAME=FLINK_OPTS")
    ap.add_argument("--live", type=lambda s: [int(x) for x in s.split(",")], default=[50_000, 1_000_000])
    ap.add_argument("--wave", type=int, default=40_000)
    ap.add_argument("--waves", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    variants = dict(v.split("=", 1) for v in args.variants) if args.variants else {"job": ""}
    broker, settings = bench_kafka("state-scale", "z")
    runs = []
    try:
        for rnd in range(args.rounds):
            order = list(variants) if rnd % 2 == 0 else list(variants)[::-1]
            for live in args.live:
                for name in order:
                    r = one_run(settings, live, args.wave, args.waves, f"{name}-{live}-{rnd}", variants[name],
                                f"z{uuid.uuid4().hex[:6]}")
                    r.update(variant=name, round=rnd)
                    runs.append(r)
                    print(json.dumps({k: r[k] for k in ("round", "variant", "live", *SUMMARY)}), flush=True)
    finally:
        broker.down()
    res = {"command": "python -m benchmarks.state_scale " + " ".join(sys.argv[1:] if argv is None else argv),
           "machine": {"platform": platform.platform(), "python": platform.python_version()},
           "marks": MARKS, "wave": args.wave, "waves": args.waves, "summary": summary(runs), "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    for row in res["summary"]:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
