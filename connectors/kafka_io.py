"""Plain Kafka producers and consumers for the command line, the demo and the tests (the job
itself reads and writes through Flink's connector)."""
from __future__ import annotations

import time
import uuid
from typing import Iterable, Iterator

import orjson
from confluent_kafka import OFFSET_BEGINNING, KafkaError, Producer, TopicPartition

from connectors.kafka_client import RDKAFKA_LOG, KafkaTarget, consumer, producer

__all__ = ["RDKAFKA_LOG", "consume", "key_of", "produce_lines", "produce_waiting"]


def key_of(raw: bytes, field: str) -> bytes | None:
    """The record's key field, when the record is JSON with that string field (else no key)."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    v = obj.get(field) if isinstance(obj, dict) else None
    return v.encode() if isinstance(v, str) else None


def produce_waiting(p: Producer, topic: str, value: bytes, key: bytes | None, **kw) -> None:
    """Produce one message, serving delivery reports while the local queue is full."""
    while True:
        try:
            p.produce(topic, value=value, key=key, **kw)
            return
        except BufferError:
            p.poll(0.1)


def produce_lines(kafka: KafkaTarget, topic: str, lines: Iterable[bytes], key_field: str | None) -> int:
    """Send each non-empty line as one message, keyed by `key_field` when present."""
    p = producer(kafka, {"enable.idempotence": True, "linger.ms": 5, "message.max.bytes": 2 << 20})
    n = 0
    errors: list[str] = []

    def on_delivery(err, _msg):
        if err is not None:
            errors.append(str(err))

    for line in lines:
        line = line.rstrip(b"\r\n")
        if not line.strip():
            continue
        produce_waiting(p, topic, line, key_of(line, key_field) if key_field else None, on_delivery=on_delivery)
        n += 1
        p.poll(0)
    p.flush(30)
    if errors:
        raise RuntimeError(f"{len(errors)} messages to {topic} failed, first: {errors[0]}")
    return n


def consume(kafka: KafkaTarget, topic: str, *, idle_timeout_s: float = 5.0, max_messages: int | None = None,
            read_committed: bool = True) -> Iterator[tuple[bytes | None, bytes | None, int, int]]:
    """Read a topic from the beginning: yields (key, value, partition, offset) until nothing new
    arrived for `idle_timeout_s` (or `max_messages` were read)."""
    c = consumer(kafka, {"group.id": f"zeroscan-reader-{uuid.uuid4()}", "enable.auto.commit": False,
                         "isolation.level": "read_committed" if read_committed else "read_uncommitted"})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        n, last = 0, time.monotonic()
        while time.monotonic() - last < idle_timeout_s:
            msg = c.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise RuntimeError(f"consuming {topic}: {msg.error()}")
            last = time.monotonic()
            yield msg.key(), msg.value(), msg.partition(), msg.offset()
            n += 1
            if max_messages is not None and n >= max_messages:
                return
    finally:
        c.close()
