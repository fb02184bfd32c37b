"""Slowly changing, globally shared data into a running scanner: every scan operator keeps a
full replica of the brand catalogue (from the compacted `brands` topic) and of the feedback
state (from the `feedback-ledger` topic), or loads them from files in file mode.

A `TopicFollower` replays its topic from the beginning at start (the topic is the durable
source of truth, so no Flink state is needed to recover it), waits until it has caught up,
then follows it in a background thread. Brand changes arriving together are applied in one
rebuild of the catalogue, built off to the side from the previous one (so it knows which
brands changed, and scanners keep what holds for the others) and swapped in whole.
"""
from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from brand_signals.catalog import BrandTable, Catalog, StaleVersionError
from brand_signals.contract import ContractError, parse_brand
from brand_signals.feedback.ledger import LedgerEvent, outcome_from_json
from brand_signals.feedback.state import FeedbackPolicy, FeedbackState
from brand_signals.records import BrandReference
from connectors.kafka_client import KafkaTarget, consumer
from connectors.kafka_io import (METADATA_TIMEOUT_S, CatchUp, TopicMissingError, end_offsets, reader_config,
                                 topic_partitions)

log = logging.getLogger(__name__)

# A full settle (every long-lived object collected once, then frozen again) when the frozen
# objects have grown by this share since the last one: cyclic garbage among frozen objects then
# waits at most that long, as CPython's own full collections wait for 25 % growth.
FULL_SETTLE_GROWTH = 0.25
_settle_lock = threading.Lock()
_frozen_after_full = 0

# Changes arriving within this window are applied in one rebuild (a bulk `brands put` of
# hundreds of brands costs one index build, not hundreds); well inside the 10 s target.
REBUILD_DEBOUNCE_S = 0.25
CATCH_UP_TIMEOUT_S = 120.0
# While catching up, progress is logged this often (a long replay is not a silent hang).
PROGRESS_LOG_S = 10.0


class CatchUpError(RuntimeError):
    """A follower could not read its topic up to the end it had at start."""


class TopicFollower:
    """Reads every partition of a topic from the beginning and hands each record to `apply`;
    `on_idle` runs when records stopped arriving for `debounce_s` (and once caught up).

    The constructor returns once everything the topic held at start has been applied, and
    raises `CatchUpError` (saying which partitions lag and the last broker error) when that does
    not happen within `catch_up_timeout_s`: a scan operator must not start on a partial
    catalogue or ledger, and must say why it cannot start."""

    def __init__(self, kafka: KafkaTarget, topic: str, apply: Callable[[bytes | None, bytes | None], None],
                 on_idle: Callable[[], None] | None = None, debounce_s: float = REBUILD_DEBOUNCE_S,
                 catch_up_timeout_s: float = CATCH_UP_TIMEOUT_S):
        self.topic = topic
        self._apply, self._on_idle, self._debounce_s = apply, on_idle, debounce_s
        self._stop = threading.Event()
        self._caught_up = threading.Event()
        self._lock = threading.RLock()
        self.last_error: str | None = None
        self.applied = 0
        self._consumer = consumer(kafka, reader_config(group_prefix="zeroscan-follower"))
        started = time.monotonic()
        try:
            parts = topic_partitions(self._consumer, topic, timeout_s=min(catch_up_timeout_s, METADATA_TIMEOUT_S))
            self._catch_up = CatchUp(self._consumer, topic, end_offsets(self._consumer, topic, parts))
        except (TopicMissingError, KafkaException) as e:
            self._consumer.close()
            raise CatchUpError(f"cannot follow topic {topic}: {e}") from None
        self._consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        self._thread = threading.Thread(target=self._run, name=f"follow-{topic}", daemon=True)
        self._thread.start()
        deadline = started + catch_up_timeout_s
        while not self._caught_up.wait(min(PROGRESS_LOG_S, max(0.0, deadline - time.monotonic()))):
            if time.monotonic() >= deadline:
                lag = self._catch_up.lagging()
                self.close()
                raise CatchUpError(f"did not catch up with topic {topic} within {catch_up_timeout_s:.0f}s: "
                                   f"{lag}; {self.applied} records applied; last broker error: "
                                   f"{self.last_error or 'none'}")
            log.info("%s follower: catching up, %s (%d records applied)", topic, self._catch_up.lagging(), self.applied)
        log.info("%s follower: caught up in %.1fs (%d records)", topic, time.monotonic() - started, self.applied)

    @property
    def lock(self) -> threading.RLock:
        """Held while a record is applied; take it to read state consistently."""
        return self._lock

    @property
    def positions(self) -> dict[int, int]:
        return dict(self._catch_up.positions)

    def _run(self) -> None:
        dirty = True
        last_change = 0.0
        while not self._stop.is_set():
            msg = self._consumer.poll(0.1)
            if msg is not None:
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        self._catch_up.on_eof(msg.partition(), msg.offset())
                    else:
                        self.last_error = str(msg.error())
                        log.warning("%s follower: %s", self.topic, msg.error())
                else:
                    with self._lock:
                        self._apply(msg.key(), msg.value())
                    self.applied += 1
                    self._catch_up.on_message(msg.partition(), msg.offset())
                    dirty, last_change = True, time.monotonic()
            caught_up = self._caught_up.is_set() or self._catch_up.check()
            if dirty and caught_up and time.monotonic() - last_change >= self._debounce_s:
                if self._on_idle is not None:
                    self._on_idle()
                dirty = False
                self._caught_up.set()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._consumer.close()


def freeze_long_lived() -> None:
    """Take the objects alive now (the catalogue just built, the word lists, the feedback
    replica) out of the cyclic collector's sight (`gc.freeze`), so its full collections walk
    only what the scan made since. Without it a full collection walks the whole catalogue: at
    1 M word marks 2.3 M objects, 0.7-0.9 s of CPU each, once every ~20 k listings scanned.
    Called after every catalogue build: the young objects are collected and frozen; when the
    frozen ones have grown by FULL_SETTLE_GROWTH since the last full settle, all are unfrozen,
    collected once and frozen again (cyclic garbage among them is freed then; what dies without
    a cycle, an old catalogue, is freed by its reference count at once)."""
    global _frozen_after_full
    if os.environ.get("ZEROSCAN_FREEZE_HEAP", "1") == "0":
        return
    with _settle_lock:
        gc.collect()
        gc.freeze()
        if gc.get_freeze_count() > (1 + FULL_SETTLE_GROWTH) * _frozen_after_full:
            gc.unfreeze()
            gc.collect()
            gc.freeze()
            _frozen_after_full = gc.get_freeze_count()


def space_young_collections(threshold: int) -> None:
    """Set the young generation's threshold of the cyclic collector to `threshold` container
    allocations (net of deallocations), keeping the older generations' (the scan worker's
    ZEROSCAN_GC_YOUNG, `ScanConfig.gc_young`; CPython's own is 700). A scan batch of 2,000
    listings keeps its parsed records, evidence and decisions alive until its results are
    written, and each young collection (and every tenth, of the middle generation) walks all of
    them again: 4-7 % of the scan's CPU at 700 by the collector's own clock
    (`benchmarks/gc_young.py`). Only garbage in reference cycles waits for a collection (the rest
    is freed by its reference count at once), so a larger count holds back at most that many
    cyclic objects between two collections."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(threshold, middle, old)


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
        freeze_long_lived()

    def close(self) -> None:
        pass


class KafkaBrandFeed:
    def __init__(self, kafka: KafkaTarget, topic: str):
        self.catalog = Catalog.empty()
        self.rejected = 0
        self._table = BrandTable()
        self._follower = TopicFollower(kafka, topic, self._apply, on_idle=self._rebuild)

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if value is None:  # compaction tombstone: the brand is gone for good
            if key:
                self._table.forget(key.decode("utf-8", "replace"))
            return
        try:
            self._table.apply(parse_brand(value))
        except (ContractError, StaleVersionError) as e:
            self.rejected += 1
            log.warning("brand feed: refused record for key %r: %s", key, e)

    def _rebuild(self) -> None:
        catalog = Catalog.build(self._table.live(), version=self.catalog.version + 1, previous=self.catalog)
        self.catalog = dataclasses.replace(catalog, versions=self._table.versions())
        freeze_long_lived()

    def close(self) -> None:
        self._follower.close()


def open_brand_feed(config) -> "FileBrandFeed | KafkaBrandFeed":
    """`config` (pipelines.scan_config.BrandInput): a brands file (`path`), or the brands topic
    (`kafka`, a KafkaClientConfig, and `topic`)."""
    if config.path is not None:
        return FileBrandFeed(config.path)
    if config.kafka is not None and config.topic:
        return KafkaBrandFeed(config.kafka, config.topic)
    raise ValueError("a brand input needs a file path or a Kafka topic")


class LedgerFeed:
    """The feedback state, rebuilt from the ledger topic and kept current. The operator that
    writes a ledger event also applies it at once (`apply_local`); the copy that comes back
    through the topic is then a no-op."""

    def __init__(self, kafka: KafkaTarget | None, topic: str | None, policy: FeedbackPolicy | None = None,
                 listener: Callable[[LedgerEvent], None] | None = None):
        """`listener` is called (under the lock) with every event the state had not seen."""
        self.state = FeedbackState(policy or FeedbackPolicy())
        self._listener = listener
        self._follower = (TopicFollower(kafka, topic, self._apply, debounce_s=0.0)
                          if kafka and topic else None)

    def _apply(self, _key: bytes | None, value: bytes | None) -> None:
        if value is None:
            return
        try:
            ev = outcome_from_json(orjson.loads(value))
        except (ValueError, KeyError, TypeError) as e:
            log.warning("ledger feed: skipped a record it cannot read: %s", e)
            return
        if ev is None:   # action records (who approved, granted, ...) change no state
            return
        if self.state.apply(ev) and self._listener is not None:
            self._listener(ev)

    def reading(self):
        """A context in which the state does not change under the reader."""
        return self._follower.lock if self._follower is not None else contextlib.nullcontext()

    def apply_local(self, ev: LedgerEvent) -> None:
        if self._follower is None:
            self.state.apply(ev)
        else:
            with self._follower.lock:
                self.state.apply(ev)

    def close(self) -> None:
        if self._follower is not None:
            self._follower.close()
