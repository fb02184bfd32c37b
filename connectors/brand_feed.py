"""Brand references into a running scanner: every scan operator keeps a full replica of the
(small, slowly changing) brand catalogue, fed from the compacted `brands` topic or from a file.

The Kafka feed replays the topic from the beginning at start (the compacted topic is the
durable source of truth, so no Flink state is needed to recover it), then follows it: each
accepted change rebuilds the catalogue off to the side and swaps it in whole.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from brand_signals.catalog import BrandTable, Catalog, StaleVersionError
from brand_signals.contract import ContractError, parse_brand
from brand_signals.records import BrandReference

log = logging.getLogger(__name__)

# Changes arriving within this window are applied in one rebuild (a bulk `brands put` of
# hundreds of brands costs one index build, not hundreds); well inside the 10 s target.
REBUILD_DEBOUNCE_S = 0.25


def load_brands_file(path: Path) -> list[BrandReference]:
    """Brands from a JSON Lines file, in version order per brand; errors name the line."""
    table = BrandTable()
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                table.apply(parse_brand(line))
            except (ContractError, StaleVersionError) as e:
                raise ValueError(f"{path}:{n}: {e}") from None
    return table.live()


class FileBrandFeed:
    def __init__(self, path: str):
        self.catalog = Catalog.build(load_brands_file(Path(path)), version=1)

    def close(self) -> None:
        pass


class KafkaBrandFeed:
    def __init__(self, bootstrap: str, topic: str, catch_up_timeout_s: float = 120.0):
        self.catalog = Catalog.empty()
        self.rejected = 0
        self.applied = 0
        self._table = BrandTable()
        self._stop = threading.Event()
        self._caught_up = threading.Event()
        self._consumer = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": f"zeroscan-brand-feed-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        })
        parts = self._consumer.list_topics(topic, timeout=30).topics[topic].partitions
        tps = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts]
        self._targets = {p: self._consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
                         for p in parts}
        self._positions = {p: 0 for p in parts}
        self._consumer.assign(tps)
        self._thread = threading.Thread(target=self._run, name="brand-feed", daemon=True)
        self._thread.start()
        if not self._caught_up.wait(catch_up_timeout_s):
            raise RuntimeError(f"brand feed did not catch up with {topic} within {catch_up_timeout_s}s")

    def _is_caught_up(self) -> bool:
        return all(self._positions[p] >= t for p, t in self._targets.items())

    def _run(self) -> None:
        dirty = self._is_caught_up()
        last_change = 0.0
        while not self._stop.is_set():
            msg = self._consumer.poll(0.1)
            if msg is not None:
                if msg.error():
                    if msg.error().code() != KafkaError._PARTITION_EOF:
                        log.warning("brand feed: %s", msg.error())
                else:
                    self._positions[msg.partition()] = msg.offset() + 1
                    self._apply(msg.key(), msg.value())
                    dirty, last_change = True, time.monotonic()
            caught_up = self._caught_up.is_set() or self._is_caught_up()
            if dirty and caught_up and time.monotonic() - last_change >= REBUILD_DEBOUNCE_S:
                self.catalog = Catalog.build(self._table.live(), version=self.catalog.version + 1)
                dirty = False
                self._caught_up.set()

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if value is None:  # compaction tombstone: the brand is gone for good
            if key:
                self._table.forget(key.decode("utf-8", "replace"))
            return
        try:
            self._table.apply(parse_brand(value))
            self.applied += 1
        except (ContractError, StaleVersionError) as e:
            self.rejected += 1
            log.warning("brand feed: refused record for key %r: %s", key, e)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._consumer.close()


def open_brand_feed(config: dict[str, str]):
    if config["kind"] == "file":
        return FileBrandFeed(config["path"])
    if config["kind"] == "kafka":
        return KafkaBrandFeed(config["bootstrap"], config["topic"])
    raise ValueError(f"unknown brand feed kind {config['kind']!r}")
