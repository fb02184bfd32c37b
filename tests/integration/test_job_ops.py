"""Operating the embedded job: `job run` prints its web UI, `job status` reads lag, checkpoints and
restarts from Kafka and the REST API, and the Prometheus reporter loads and serves the scan
operator's metrics (a live scrape); a job cancelled from outside ends `job run` with its reason."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request

import pytest

from connectors.job_ops import scrape_all
from connectors.kafka_io import produce_lines
from tests.conftest import ROOT, SAMPLES, settings_env
from tests.integration.test_cluster import PROMETHEUS_PORTS, ZEROSCAN_COUNTERS
from tests.integration.test_kafka_job import start_job, stop, wait_committed

pytestmark = pytest.mark.integration


def test_embedded_job_status_web_ui_and_prometheus_metrics(kafka_settings):
    s = kafka_settings
    produce_lines(s.bootstrap, s.topics.brands, SAMPLES.joinpath("brands.jsonl").read_bytes().splitlines(),
                  "brand_id")
    produce_lines(s.bootstrap, s.topics.listings, SAMPLES.joinpath("listings.jsonl").read_bytes().splitlines(),
                  "listing_id")
    job = start_job(s, "job.log")
    try:
        wait_committed(s, job)
        log = (s.state_dir / "job.log").read_text()
        m = re.search(r"job ([0-9a-f]{32}) started; web UI (http://127\.0\.0\.1:\d+)", log)
        assert m, log[-2000:]
        job_id, web_ui = m.groups()
        status = subprocess.run([sys.executable, "-m", "zeroscan", "job", "status"], cwd=ROOT, capture_output=True,
                                text=True, timeout=60, env={**os.environ, **settings_env(s)})
        assert status.returncode == 0, status.stdout + status.stderr
        assert f"job {job_id}: RUNNING; web UI {web_ui}" in status.stdout
        assert "consumer lag: 0 records" in status.stdout and "last completed checkpoint: #" in status.stdout

        # The reporter loaded (plugins found) and serves this job's scan metrics.
        deadline = time.monotonic() + 30
        while True:
            mine = {name for metrics in scrape_all(PROMETHEUS_PORTS).values()
                    for name, samples in metrics.items() if any(job_id in labels for labels, _v in samples)}
            # Python counters reach Flink once they change: this input has no feedback events.
            wanted = {f"flink_taskmanager_job_task_operator_zeroscan_{c}" for c in ZEROSCAN_COUNTERS
                      if c != "feedback_events"}
            if wanted <= mine or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert wanted <= mine, sorted(n for n in mine if "zeroscan" in n)
        assert "flink_jobmanager_job_numRestarts" in mine

        # Cancelled from outside (the REST API), `job run` says so and exits, not runs on.
        req = urllib.request.Request(f"{web_ui}/jobs/{job_id}?mode=cancel", method="PATCH")
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 202
        assert job.wait(timeout=90) == 1
        said = (s.state_dir / "job.log").read_text()
        # Its status read as CANCELED, or the mini-cluster already shut down by the next poll.
        assert re.search(r"error: scanner job ended: (CANCELED|its cluster is gone)", said), said[-3000:]
        assert "Traceback" not in said, said[-3000:]
    finally:
        stop(job)
