"""Cluster wiring without a JVM: checkpoint/savepoint locations as URIs, who owns them in each
mode, and the settings flink-conf/ gives a standalone cluster."""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import yaml

from pipelines.scanner_job import _local_dir, load_flink_conf, state_storage
from zeroscan.settings import ROOT, Settings, storage_uri

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("given, expected", [
    ("s3://bucket/zeroscan/checkpoints", "s3://bucket/zeroscan/checkpoints"),    # kept as given, not resolved
    ("s3a://bucket/cp", "s3a://bucket/cp"),                                      # Hadoop's S3 scheme
    ("hdfs://namenode:8020/flink/cp", "hdfs://namenode:8020/flink/cp"),          # host and port survive
    ("file:///shared/flink/cp", "file:///shared/flink/cp"),                      # a shared volume
    ("gs://b/p", "gs://b/p"),
    ("  s3://bucket/x  ", "s3://bucket/x"),                                      # surrounding blanks
    ("", None),                                                                  # empty: unset
    (None, None),
])
def test_storage_uri_keeps_uris(given, expected):
    assert storage_uri(given) == expected


def test_storage_uri_makes_plain_paths_absolute_file_uris(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert storage_uri("cp") == (tmp_path / "cp").as_uri()
    assert storage_uri(str(tmp_path / "a b")) == (tmp_path / "a b").as_uri()   # spaces quoted


@pytest.mark.parametrize("bad, why", [
    ("s3://", "no bucket"),
    ("://x", "bad URI scheme"),
    ("3s://bucket/x", "bad URI scheme"),
    ("s 3://bucket", "bad URI scheme"),
])
def test_storage_uri_rejects_broken_uris(bad, why):
    with pytest.raises(ValueError, match=why):
        storage_uri(bad)


def _settings(tmp_path, **kw) -> Settings:
    return dataclasses.replace(Settings.from_env(), state_dir=tmp_path / "state", **kw)


def test_embedded_job_keeps_state_under_the_state_folder_by_default(tmp_path):
    got = state_storage(_settings(tmp_path), cluster=False)
    assert got == {"execution.checkpointing.dir": (tmp_path / "state" / "checkpoints").as_uri(),
                   "execution.checkpointing.savepoint-dir": (tmp_path / "state" / "savepoints").as_uri()}


def test_embedded_job_takes_remote_uris(tmp_path):
    s = _settings(tmp_path, checkpoint_dir="s3://b/cp", savepoint_dir="hdfs://nn:8020/sp")
    assert state_storage(s, cluster=False) == {"execution.checkpointing.dir": "s3://b/cp",
                                               "execution.checkpointing.savepoint-dir": "hdfs://nn:8020/sp"}
    assert _local_dir(s.checkpoint_uri) is None      # no local scan for restore points on s3


def test_a_cluster_job_leaves_storage_to_the_cluster(tmp_path):
    assert state_storage(_settings(tmp_path), cluster=True) == {}
    only_cp = state_storage(_settings(tmp_path, checkpoint_dir="s3://b/cp"), cluster=True)
    assert only_cp == {"execution.checkpointing.dir": "s3://b/cp"}


def test_settings_read_storage_uris_from_the_environment(monkeypatch):
    monkeypatch.setenv("ZEROSCAN_CHECKPOINT_DIR", "s3://bucket/cp")
    monkeypatch.setenv("ZEROSCAN_SAVEPOINT_DIR", "file:///shared/sp")
    s = Settings.from_env()
    assert (s.checkpoint_uri, s.savepoint_uri) == ("s3://bucket/cp", "file:///shared/sp")


def test_local_dir_of_a_file_uri(tmp_path):
    assert _local_dir((tmp_path / "a b").as_uri()) == tmp_path / "a b"


FLINK_CONF = ROOT / "flink-conf"


def test_flink_conf_restart_strategy_outlives_transient_faults():
    conf = load_flink_conf(FLINK_CONF)
    assert conf["restart-strategy.type"] == "exponential-delay"
    assert "restart-strategy.exponential-delay.attempts-before-reset-backoff" not in conf  # unlimited
    assert conf["restart-strategy.exponential-delay.reset-backoff-threshold"]


def test_flink_conf_binds_the_standalone_cluster_to_loopback():
    conf = load_flink_conf(FLINK_CONF)
    for key in ("jobmanager.rpc.address", "jobmanager.bind-host", "taskmanager.bind-host", "taskmanager.host",
                "rest.address", "rest.bind-address"):
        assert conf[key] == "127.0.0.1", key
    assert "execution.checkpointing.dir" not in conf       # the cluster's start (or its own conf) sets it
    assert Path(FLINK_CONF / "workers").read_text().split() == ["127.0.0.1", "127.0.0.1"]
    assert (FLINK_CONF / "log4j.properties").is_file() and (FLINK_CONF / "log4j-console.properties").is_file()
    assert (FLINK_CONF / "log4j-cli.properties").is_file()


MONITORING = ROOT / "deploy" / "monitoring"
_METRIC = re.compile(r"\bflink_[A-Za-z0-9_]+")


def monitoring_metric_names() -> set[str]:
    """Every Flink metric the dashboard and the alert rules use (the cluster test checks each
    against a live scrape)."""
    dash = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    rules = yaml.safe_load((MONITORING / "alerts.yaml").read_text())
    exprs += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    return {m for e in exprs for m in _METRIC.findall(e)}


def test_grafana_dashboard_parses_and_every_panel_queries_prometheus():
    dash = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    assert dash["uid"] and dash["panels"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        assert p["datasource"]["type"] == "prometheus" and p["targets"], p["title"]
        assert all(t["expr"].strip() for t in p["targets"])


def test_alert_rules_parse_and_cover_lag_dead_letters_checkpoints_latency():
    rules = yaml.safe_load((MONITORING / "alerts.yaml").read_text())
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    assert {"ZeroscanConsumerLag", "ZeroscanDeadLetterRate", "ZeroscanCheckpointsFailing",
            "ZeroscanDecisionLatency"} <= set(alerts)
    for name, r in alerts.items():
        assert r["expr"].strip() and r["labels"]["severity"] in ("page", "ticket"), name
        assert r["expr"].count("(") == r["expr"].count(")"), name
    assert "pendingRecords" in alerts["ZeroscanConsumerLag"]["expr"]
    assert "numberOfFailedCheckpoints" in alerts["ZeroscanCheckpointsFailing"]["expr"]
    assert monitoring_metric_names()


def test_kafka_sinks_keep_incrementing_transactional_ids():
    """FLINK-40689 needs a transactional id reused for ~32k transactions (POOLING naming); the
    connector's default (INCREMENTING) uses a fresh id per checkpoint. See README."""
    source = (ROOT / "pipelines" / "scanner_job.py").read_text().lower()
    assert "pooling" not in source
    assert "transaction-naming-strategy" not in source or "incrementing" in source


def test_flink_conf_keeps_a_state_larger_than_its_cache_cheap_to_read():
    # A marketplace's keyed state outgrows RocksDB's cache; without these, each update's read
    # re-read whole index blocks the data blocks had evicted (benchmarks/state_scale.py: the
    # keyed step ~10x dearer at 1 M live listings on 128 MB of managed memory).
    conf = load_flink_conf(FLINK_CONF)
    assert conf["state.backend.type"] == "rocksdb"
    assert conf["state.backend.rocksdb.use-bloom-filter"] == "true"
    assert conf["state.backend.rocksdb.memory.partitioned-index-filters"] == "true"
    assert conf.get("state.backend.rocksdb.memory.managed", "true") == "true"   # partitioning needs it
    # Fewer rewrites, and reads of a state out of the page cache ~3x fewer bytes (the README).
    assert conf["state.backend.rocksdb.compaction.style"] == "UNIVERSAL"
