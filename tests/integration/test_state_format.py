"""The job's keyed state across a change of RocksDB's compaction style, on the real broker.

A retained checkpoint after a hard kill is restored from RocksDB's own files (incremental
checkpoints), not re-inserted key by key as a canonical savepoint is, so a job started with
another compaction style opens files that the other style laid out. This test builds state
whose files sit below level 0 (RocksDB's log says so), kills the job, restarts it with
universal compaction, kills it again and restarts it with level compaction: each restart must
resume from the checkpoint with the state whole (a listing flagged before is not flagged a
second time when re-posted, new listings are decided)."""
from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest

from connectors.kafka_io import produce_lines
from tests.integration.test_feedback_loop import latest, wait_for
from tests.integration.test_kafka_job import listing, read, start_job, stop, wait_committed

pytestmark = pytest.mark.integration

BRAND = {"brand_id": "veltrix", "name": "Veltrix", "trademarks": ["Veltrix"], "enforcement": "takedown",
         "version": 1}
BATCHES = 6          # one checkpoint after each: RocksDB compacts 4 level-0 files into level 1
PER_BATCH = 40
COMPACTED_BELOW_L0 = re.compile(r'"event": "compaction_finished".*"output_level": [1-9]')


def records(batch: int, title: str = "Veltrix cordless drill {i} 18V") -> list[bytes]:
    return [listing(batch * 1000 + i, title.format(i=i), seller=f"s-{i}") for i in range(PER_BATCH)]


def compacted_below_l0(logs: Path) -> bool:
    """Whether RocksDB's own log (one per instance, named after its folder) tells of a compaction
    whose output went below level 0."""
    for log in logs.glob("*_LOG*"):
        if COMPACTED_BELOW_L0.search(log.read_text(errors="replace")):
            return True
    return False


def kill(job) -> None:
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()


def test_checkpoint_restores_across_compaction_styles(kafka_settings):
    s = kafka_settings
    local, logs = s.state_dir / "rocksdb", s.state_dir / "rocksdb-logs"
    logs.mkdir(parents=True)

    def env(style: str) -> dict[str, str]:
        # RocksDB's logs in a folder of this test's own (they follow FLINK_LOG_DIR otherwise,
        # which a test run before in this process may have set for itself).
        return {"ZEROSCAN_FLINK_OPTS": f"state.backend.rocksdb.localdir={local};state.backend.rocksdb.log.dir={logs};"
                                       f"state.backend.rocksdb.compaction.style={style}"}

    produce_lines(s.bootstrap, s.topics.brands, [json.dumps(BRAND).encode()], "brand_id")
    job = start_job(s, "job-level.log", env("LEVEL"))
    try:
        for b in range(BATCHES):
            produce_lines(s.bootstrap, s.topics.listings, records(b), "listing_id")
            wait_committed(s, job)          # committed at a checkpoint, which flushes what it read
        deadline = time.monotonic() + 60
        while not compacted_below_l0(logs) and time.monotonic() < deadline:
            produce_lines(s.bootstrap, s.topics.listings, records(BATCHES), "listing_id")
            wait_committed(s, job)
        assert compacted_below_l0(logs), "no compaction into level 1: the state is all in level 0"
        # One more checkpoint, so that the one restored holds the compacted files.
        produce_lines(s.bootstrap, s.topics.listings, records(BATCHES + 1), "listing_id")
        wait_committed(s, job)
    finally:
        kill(job)
    first = {d["listing_id"] for d in read(s, s.topics.decisions)}
    assert len(first) >= BATCHES * PER_BATCH

    for n, style in enumerate(("UNIVERSAL", "LEVEL"), 1):
        started = time.time()
        job = start_job(s, f"job-{style.lower()}.log", env(style))
        try:
            # Every listing again, unchanged but for its event time, and a new one.
            again = [json.dumps({**json.loads(r), "event_time": 1_800_000_000_000 + n}).encode()
                     for b in range(BATCHES) for r in records(b)]
            produce_lines(s.bootstrap, s.topics.listings, again + [listing(90_000 + n, "Veltrix hammer drill")],
                          "listing_id")
            wait_for(s, job, lambda d, n=n: latest(d, f"l{90_000 + n}") is not None, timeout_s=240)
        finally:
            text = job.log_path.read_text()
            kill(job)
        assert re.search(r"resuming from \S*chk-\d+", text), text[-3000:]
        assert any(f"compaction_style=kCompactionStyle{style.title()}" in p.read_text()
                   for p in local.glob("*/db/OPTIONS-*") if p.stat().st_mtime >= started), "style not applied"

    decisions = read(s, s.topics.decisions)
    flagged = [(d["listing_id"], d["action"]) for d in decisions]
    assert len(flagged) == len(set(flagged)), "a listing flagged before a restart was flagged again: state lost"
    assert {"l90001", "l90002"} <= {d["listing_id"] for d in decisions}
    job = start_job(s, "job-last.log")      # the job as configured resumes and stops with a savepoint
    try:
        produce_lines(s.bootstrap, s.topics.listings, [listing(90_003, "Veltrix impact driver")], "listing_id")
        wait_for(s, job, lambda d: latest(d, "l90003") is not None, timeout_s=240)
    finally:
        stop(job)
