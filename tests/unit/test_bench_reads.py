"""The bench's job rates are windowed on where the job's Kafka source reads (its
`currentOffset` gauges on a Prometheus reporter of the bench's own), not on the committed
offsets, which come up to ~12 s late once a job has drained what it reads."""
from __future__ import annotations

import http.server
import threading

import pytest

from benchmarks.kafka_measures import Mark, SourceReads, thread_role, window, window_rates

pytestmark = pytest.mark.unit

GAUGE = "flink_taskmanager_job_task_operator_KafkaSourceReader_topic_partition_currentOffset"


def _line(topic_label: str, partition: int, value: float) -> str:
    return (f'{GAUGE}{{task_attempt_num="0",partition="{partition}",topic="{topic_label}",'
            f'operator_name="Source:_inputs_kafka_1_",subtask_index="0",}} {value}')


def _serve(reads: SourceReads, body: str) -> http.server.HTTPServer:
    class Metrics(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            data = body.encode()
            self.send_response(200 if self.path == "/metrics" else 404)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", reads.port), Metrics)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_the_read_position_sums_the_listings_partitions_and_nothing_else():
    reads = SourceReads("b1a2c3-listings")
    assert reads.read() is None                       # nothing listening yet: the job is starting
    body = "\n".join([
        "# HELP flink_taskmanager_job_task_operator_KafkaSourceReader_topic_partition_currentOffset currentOffset",
        "# TYPE flink_taskmanager_job_task_operator_KafkaSourceReader_topic_partition_currentOffset gauge",
        _line("b1a2c3_listings", 0, 4995.0),          # the record at offset 4995 handed on: 4996 read
        _line("b1a2c3_listings", 1, 5003.0),
        _line("b1a2c3_listings", 2, -1.0),            # nothing read from this partition yet
        _line("b1a2c3_listings", 3, 12.0),
        _line("b1a2c3_quiet_listings", 0, 3434.0),    # another input of the same source
        _line("b1a2c3_feedback", 1, 77.0),
        _line("x_b1a2c3_listings", 0, 99.0),          # another bench's topic, named alike
    ]) + "\n"
    server = _serve(reads, body)
    try:
        assert reads.read() == 4996 + 5004 + 0 + 13
    finally:
        server.shutdown()
        server.server_close()
    opts = dict(item.split("=", 1) for item in reads.flink_opts().split(";"))
    assert opts["metrics.reporter.zsbenchreads.port"] == str(reads.port)
    assert opts["metrics.reporter.zsbenchreads.filter.includes"] == "*:currentOffset:gauge"


def test_a_source_that_reports_no_listings_offsets_reads_as_none():
    reads = SourceReads("t-listings")
    server = _serve(reads, _line("t_feedback", 0, 10.0) + "\n")
    try:
        assert reads.read() is None
    finally:
        server.shutdown()
        server.server_close()


def test_the_window_follows_reads_while_commits_lag():
    # A wave of 1,000 records from offset 10,000: the job reads it in 2 s, the commits show it
    # only at 12 s (the fetcher's idle poll). The rate is over the reading, not the wait.
    marks = [Mark(0.0, 10_000, 100.0, 10_000), Mark(0.5, 10_000, 100.1, 10_050),
             Mark(1.0, 10_000, 100.6, 10_500), Mark(2.0, 10_000, 101.1, 10_950),
             Mark(2.5, 10_000, 101.15, 11_000), Mark(12.0, 11_000, 102.1, 11_000)]
    a, b = window(marks, 10_000, 11_000)
    assert (a.t, b.t) == (0.5, 2.0)
    r = window_rates(a, b, peak=1_000.0)
    assert r["listings"] == 900 and r["wall_s"] == 1.5 and r["listings_per_cpu_s"] == 900


def test_the_commit_window_over_the_same_polls_is_reported_with_its_lag():
    from benchmarks.kafka_measures import by_commits

    marks = [Mark(0.0, 10_000, 100.0, 10_000), Mark(0.5, 10_000, 100.1, 10_050),
             Mark(1.0, 10_000, 100.6, 10_500), Mark(2.0, 10_000, 101.1, 10_950),
             Mark(2.5, 10_000, 101.15, 11_000), Mark(12.0, 11_000, 102.1, 11_000)]
    # A wave's: from the mark before its production to 90 % committed, 10 s after 90 % was read.
    assert by_commits(marks, 10_000, 11_000, wave=True) == {"listings_per_cpu_s": 476, "wall_s": 12.0, "lag_s": 10.0}


def test_thread_roles_from_cut_and_whole_names():
    # /proc cuts names at 15 characters: every OVER aggregate's thread is the keyed step there
    assert thread_role("java", "OverAggregate[6") == "keyed_step"
    assert thread_role("java", "OverAggregate[1") == "keyed_step"
    # whole names (jcmd): only the one chained to the Python scan
    assert thread_role("java", "OverAggregate[6] -> Calc[7] -> PythonCalc[8] -> Calc[9]") == "keyed_step"
    assert thread_role("java", "OverAggregate[13] -> Calc[14] -> Correlate[15]") == "other"
    assert thread_role("java", "Source: inputs_kafka[1] -> Calc[2]") == "source"
    assert thread_role("java", "rocksdb:low") == "rocksdb"
    assert thread_role("java", "Flink-RocksDBStateDataTransferHelper") == "rocksdb"
    assert thread_role("java", "C2 CompilerThre") == "jit"
    assert thread_role("python", "python") == "python"
    assert thread_role("java", "kafka-producer-network-thread") == "other"


def test_the_state_bench_counts_the_sst_bytes_rocksdb_logs_it_created(tmp_path):
    from benchmarks.state_scale import sst_written_mib

    def event(kind: str, size: int) -> str:
        return (f'2026/12/08-03:28:06.416708 1402 EVENT_LOG_v1 {{"time_micros": 1, "cf_name": "x", "job": 6, '
                f'"event": "{kind}", "file_number": 36, "file_size": {size}, "file_checksum": ""}}\n')

    logs = tmp_path / "flink-logs"
    logs.mkdir()
    (logs / "tmp_state_rocksdb_job_a_op_KeyedProcessOperator_1_db_LOG").write_text(
        event("table_file_creation", 3 * 2**20) + event("flush_finished", 99 * 2**20) + "not an event\n")
    (logs / "tmp_state_rocksdb_job_a_op_KeyedProcessOperator_2_db_LOG.old.1796700486").write_text(
        event("table_file_creation", 2**20))
    (logs / "flink-root-python-vm.log").write_text(event("table_file_creation", 50 * 2**20))   # not RocksDB's
    assert sst_written_mib(logs) == 4.0


def test_the_state_bench_reads_the_peak_of_a_folder_that_changes_under_it(tmp_path):
    import time

    from benchmarks.state_scale import DiskPeak, disk_mib

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "big.sst").write_bytes(b"\0" * 3 * 2**20)
    peak = DiskPeak(tmp_path, every_s=0.02).start()
    try:
        deadline = time.monotonic() + 5
        while peak.peak < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        (tmp_path / "a" / "big.sst").unlink()           # a compaction replaced it
        (tmp_path / "a" / "small.sst").write_bytes(b"\0" * 2**20)
        assert peak.take() == 3.0 and disk_mib(tmp_path) == 1.0
        time.sleep(0.1)
        assert peak.take() == 1.0                       # each take starts a new window
    finally:
        peak.stop()


def test_the_state_bench_evicts_sst_files_from_the_page_cache_so_reads_go_to_storage(tmp_path):
    """Performed on a real file: read once it is cached (no storage read), then evicted by the
    bench's evictor, read again: the bytes come from storage (`/proc/self/io`). Not on tmpfs,
    where there is no storage to read."""
    import os
    import time

    from benchmarks.kafka_measures import storage_read_bytes
    from benchmarks.state_scale import PageCacheEvictor, bench_options

    with open("/proc/mounts") as f:
        mounts = [line.split()[1:3] for line in f]
    where = max((m for m in mounts if str(tmp_path).startswith(m[0].rstrip("/") + "/")), key=lambda m: len(m[0]))
    if where[1] in ("tmpfs", "ramfs"):
        pytest.skip(f"the temporary folder is on {where[1]}: no storage behind its page cache")
    sst, other = tmp_path / "db" / "000012.sst", tmp_path / "db" / "MANIFEST-000005"
    sst.parent.mkdir()
    for f in (sst, other):
        with open(f, "wb") as out:
            out.write(os.urandom(8 * 2**20))
            out.flush()
            os.fsync(out.fileno())          # clean pages: what DONTNEED drops

    def read_from_storage(f) -> int:
        before = storage_read_bytes(os.getpid())
        with open(f, "rb", buffering=0) as src:
            while src.read(2**20):
                pass
        return storage_read_bytes(os.getpid()) - before

    read_from_storage(sst), read_from_storage(other)       # cached now
    assert read_from_storage(sst) < 2**20
    ev = PageCacheEvictor(tmp_path, every_s=0.01).start()
    try:
        deadline = time.monotonic() + 5
        while ev.passes < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        ev.stop()
    assert ev.passes >= 2
    assert read_from_storage(sst) >= 7 * 2**20            # evicted: read from the disk again
    assert read_from_storage(other) < 2**20               # only SST files are evicted
    assert bench_options("a=1;bench.evict-every=0.5;b=x=y") == ("a=1;b=x=y", {"bench.evict-every": "0.5"})
