"""Kafka administration through confluent-kafka: readiness, topics, end and committed offsets."""
from __future__ import annotations

import time

from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import NewTopic

from connectors.kafka_client import KafkaTarget, admin, consumer, kafka_config
from zeroscan.settings import Topics

_COORDINATOR_MOVING = frozenset({KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                                 KafkaError.COORDINATOR_NOT_AVAILABLE})


def contract_topics(t: Topics, partitions: int = 4) -> dict[str, dict]:
    """The topics of the data contract plus the dead-letter topic, with their configs."""
    return {
        t.listings: {"partitions": partitions},
        # Compacted: the latest version of every brand is kept forever and replayed by each
        # scanner instance at start; tombstone records are kept a day so replays see them.
        t.brands: {"partitions": 1, "config": {"cleanup.policy": "compact", "delete.retention.ms": "86400000"}},
        t.feedback: {"partitions": partitions},
        t.decisions: {"partitions": partitions},
        t.dead_letter: {"partitions": 1},
        # One partition: a single order of removals and appeals for every replica of the state;
        # kept forever (it is the memory of the feedback loop, thousands of events a day).
        t.ledger: {"partitions": 1, "config": {"retention.ms": "-1"}},
    }


def wait_for_broker(kafka: KafkaTarget, timeout_s: float = 60.0) -> None:
    client = admin(kafka)
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            md = client.list_topics(timeout=2)
            if md.brokers:
                return
        except KafkaException as e:
            last = e
        time.sleep(0.3)
    raise RuntimeError(f"Kafka at {kafka_config(kafka).bootstrap} did not answer within {timeout_s}s ({last})")


def ensure_topics(kafka: KafkaTarget, topics: dict[str, dict]) -> list[str]:
    """Create the topics that do not exist yet; return the names created."""
    client = admin(kafka)
    existing = set(client.list_topics(timeout=10).topics)
    new = [NewTopic(name, num_partitions=spec.get("partitions", 1), replication_factor=1,
                    config=spec.get("config", {}))
           for name, spec in topics.items() if name not in existing]
    created = []
    for name, fut in (client.create_topics(new) if new else {}).items():
        try:
            fut.result(timeout=30)
            created.append(name)
        except KafkaException as e:
            if "TOPIC_ALREADY_EXISTS" not in str(e):
                raise
    return created


def end_offsets(kafka: KafkaTarget, topic: str) -> dict[int, int]:
    c = consumer(kafka, {"group.id": "zeroscan-offsets-probe", "enable.auto.commit": False})
    try:
        md = c.list_topics(topic, timeout=10).topics[topic]
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in md.partitions}
    finally:
        c.close()


def committed_offsets(kafka: KafkaTarget, group: str, topic: str, timeout_s: float = 30.0) -> dict[int, int]:
    """The group's committed offset per partition (0 where none), retrying while the group
    coordinator moves or loads (normal for a few seconds after a broker starts)."""
    c = consumer(kafka, {"group.id": group, "enable.auto.commit": False})
    deadline = time.monotonic() + timeout_s
    try:
        md = c.list_topics(topic, timeout=10).topics[topic]
        while True:
            try:
                tps = c.committed([TopicPartition(topic, p) for p in md.partitions], timeout=10)
                return {tp.partition: max(tp.offset, 0) for tp in tps}
            except KafkaException as e:
                err = e.args[0]
                if not (err.retriable() or err.code() in _COORDINATOR_MOVING) or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        c.close()
