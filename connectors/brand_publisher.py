"""Accepted registry changes onto the compacted `brands` topic, keyed by brand_id, where every
running scanner instance picks them up (`connectors.brand_feed`), and the registry's and the
accounts' action records (who, when, what) onto the feedback-ledger topic. One idempotent producer; each
publish waits for the broker's acknowledgement and raises when there is none."""
from __future__ import annotations

import threading

import orjson
from confluent_kafka import KafkaException

from brand_signals.contract import brand_to_obj
from brand_signals.records import BrandReference
from connectors.kafka_client import KafkaTarget, producer

# librdkafka gives up on a message after this long (retries included); the flush waits a little
# longer so the delivery report, not the flush timeout, says what went wrong.
DELIVERY_TIMEOUT_MS = 30_000
FLUSH_TIMEOUT_S = DELIVERY_TIMEOUT_MS / 1000 + 5
# The broker's default message.max.bytes (~1 MiB) bounds one record; a bigger brand would be
# refused by the broker, so it is refused here first with a clear message.
MAX_PUBLISHED_BYTES = 1_000_000


class PublishError(RuntimeError):
    """The record was not acknowledged by the broker."""


class KafkaBrandPublisher:
    """`publisher(brand)` sends the brand's contract JSON (a tombstone record when withdrawn)."""

    def __init__(self, kafka: KafkaTarget, topic: str, *, delivery_timeout_ms: int = DELIVERY_TIMEOUT_MS,
                 ledger_topic: str | None = None) -> None:
        """`ledger_topic`: where `record` writes the registry's action records (the
        feedback-ledger topic; the registry calls it for every change)."""
        self.topic = topic
        self.ledger_topic = ledger_topic
        self._flush_timeout_s = delivery_timeout_ms / 1000 + 5
        self._lock = threading.Lock()
        self._producer = producer(kafka, {
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 0,
            "delivery.timeout.ms": delivery_timeout_ms,
            "message.max.bytes": MAX_PUBLISHED_BYTES + (64 << 10),
        })

    @classmethod
    def from_settings(cls, settings) -> "KafkaBrandPublisher":
        """From `zeroscan.settings.Settings` (its `kafka` and `topics`)."""
        return cls(settings.kafka, settings.topics.brands, ledger_topic=settings.topics.ledger)

    def __call__(self, brand: BrandReference) -> None:
        value = orjson.dumps(brand_to_obj(brand))
        if len(value) > MAX_PUBLISHED_BYTES:
            raise PublishError(f"brand {brand.brand_id}: record is {len(value)} bytes, above the "
                               f"{MAX_PUBLISHED_BYTES}-byte message limit")
        self._send(self.topic, brand.brand_id, value, f"brand {brand.brand_id}")

    def record(self, action: dict) -> None:
        """One action record (who, when, what) onto the ledger topic, keyed by its brand or
        account; returns once the broker acknowledged it."""
        if self.ledger_topic is None:
            raise PublishError("no ledger topic to record actions on")
        key = action.get("brand_id") or f"account:{action.get('account', '')}"
        self._send(self.ledger_topic, key, orjson.dumps(action), f"{action['kind']} record")

    def _send(self, topic: str, key: str, value: bytes, what: str) -> None:
        errors: list[str] = []

        def on_delivery(err, _msg) -> None:
            if err is not None:
                errors.append(str(err))

        with self._lock:  # one message in flight at a time, so the flush reports on this one
            try:
                self._producer.produce(topic, key=key.encode(), value=value, on_delivery=on_delivery)
            except (KafkaException, BufferError) as e:
                raise PublishError(f"{what}: not sent to {topic}: {e}") from None
            remaining = self._producer.flush(self._flush_timeout_s)
        if errors:
            raise PublishError(f"{what}: {topic} refused it: {errors[0]}")
        if remaining:
            raise PublishError(f"{what}: no acknowledgement from {topic} within {self._flush_timeout_s:.0f}s")

    def close(self) -> None:
        self._producer.flush(self._flush_timeout_s)
