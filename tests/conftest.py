"""Shared fixtures. The integration tier starts one real Kafka broker (KRaft, from the Maven
jars) for the whole session on a free port, in a temporary state folder."""
from __future__ import annotations

import dataclasses
import subprocess
import uuid
import warnings
from pathlib import Path

import pytest

from connectors.kafka_broker import free_port_pair

# PyFlink and Apache Beam (its Python runtime) warn about their own internals at import; import
# them once here with those warnings silenced so `filterwarnings = error` applies to our code.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import pyflink.table  # noqa: F401
    import pyflink.fn_execution.beam.beam_worker_pool_service  # noqa: F401
    import pyflink.java_gateway

# PyFlink's gateway launcher drops the JVM's Popen object while the JVM runs on; Python then
# reports a ResourceWarning from Popen.__del__. Keep the object alive for the session.
_GATEWAY_PROCESSES = []
_launch = pyflink.java_gateway.launch_gateway_server_process


def _launch_and_keep(*args, **kwargs):
    proc = _launch(*args, **kwargs)
    _GATEWAY_PROCESSES.append(proc)
    return proc


pyflink.java_gateway.launch_gateway_server_process = _launch_and_keep

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory):
    from connectors.kafka_broker import KafkaBroker
    from zeroscan.settings import Settings

    settings = Settings.from_env()
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka-state"), settings.jar_dir / "kafka-broker",
                         port=free_port_pair())
    broker.up()
    yield broker
    broker.down()


@pytest.fixture
def kafka_settings(kafka_broker, tmp_path):
    """Settings pointing at the session broker, with topics, group and state unique to the test."""
    from connectors.kafka_admin import contract_topics, ensure_topics
    from zeroscan.settings import Settings, Topics

    tag = uuid.uuid4().hex[:8]
    settings = dataclasses.replace(
        Settings.from_env(), bootstrap=kafka_broker.bootstrap, state_dir=tmp_path / "state",
        consumer_group=f"scanner-{tag}", transactional_id_prefix=f"scanner-{tag}",
        topics=Topics.prefixed(f"t{tag}-"))
    ensure_topics(settings.bootstrap, contract_topics(settings.topics, partitions=2))
    return settings


@pytest.fixture(scope="module")
def flink_cluster(tmp_path_factory):
    """A standalone session cluster (one JobManager, two TaskManagers) on free loopback ports,
    started the way `zeroscan cluster up` starts it; stopped (by pid) after the module."""
    from zeroscan.cli import dev_cluster
    from zeroscan.settings import Settings

    port = free_port_pair()
    settings = dataclasses.replace(Settings.from_env(), state_dir=tmp_path_factory.mktemp("flink-cluster"),
                                   flink_rest_port=port, flink_rpc_port=port + 1)
    cluster = dev_cluster(settings)
    try:
        cluster.up()
        yield cluster
    finally:
        cluster.down()


def settings_env(settings) -> dict[str, str]:
    """Environment variables that make a `zeroscan` subprocess use these settings."""
    prefix = settings.topics.listings[: -len("listings")]
    return {
        "ZEROSCAN_BOOTSTRAP": settings.bootstrap,
        "ZEROSCAN_STATE_DIR": str(settings.state_dir),
        "ZEROSCAN_GROUP": settings.consumer_group,
        "ZEROSCAN_TXN_PREFIX": settings.transactional_id_prefix,
        "ZEROSCAN_TOPIC_PREFIX": prefix,
        "ZEROSCAN_FLINK_REST_PORT": str(settings.flink_rest_port),
        "ZEROSCAN_FLINK_RPC_PORT": str(settings.flink_rpc_port),
        # The job's Flink and RocksDB logs in its own state folder: a job built in this process
        # before (the pipeline tests) set FLINK_LOG_DIR here for itself, which a subprocess would
        # otherwise inherit, writing into that test's folder.
        "FLINK_LOG_DIR": str(settings.state_dir / "flink-logs"),
    }


def pytest_unconfigure(config):
    """Stop the PyFlink gateway JVM the session started and close its pipes."""
    for proc in _GATEWAY_PROCESSES:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
