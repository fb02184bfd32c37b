"""The retro worker (`zeroscan retro run`): retroactive matching and clears for brand changes.

It keeps the latest record of every live listing (from the `listings` topic) in its own
embedded RocksDB store, with the offsets it has read up to written in the same write batches,
so a restart resumes exactly where it stopped and the listings topic's retention does not
bound how old a live listing may be. It follows the compacted `brands` topic (only approved
content is published there: an approval, an update, a withdrawal is one record) and
`listing-status` (the open flags). For every brand change past the last one it handled
(`brand_signals.retro.brand_delta`), once its listing store has caught up with the listings
topic, it pre-filters the live listings against the changed brand only and sends a `rescan`
record for each candidate and for each open flag of the brand to the `rescans` topic, which
the job decides like listings (exactly once, transitions and `clear`s from its per-listing
state). The handled position is stored after the rescans were acknowledged: after a crash a
change is handled again, and the job's transitions make the repeated rescans no-ops.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition
from rocksdict import Options, Rdict, WriteBatch

from brand_signals.contract import ContractError, parse_brand
from brand_signals.records import BrandReference
from brand_signals.retro import (BrandDelta, OpenFlags, PreFilter, brand_delta, live_listing_id, pack_content,
                                 rescan_record, select_batches, unpack_content)
from connectors.kafka_client import KafkaTarget, consumer, producer
from connectors.kafka_io import produce_waiting, topic_partitions

log = logging.getLogger(__name__)

_LISTING = b"l:"
_LISTINGS_POS = b"o:"   # + partition: the next listings offset to read
_BRANDS_POS = b"b:"     # + partition: the next brands offset whose change is not handled yet
# Live listings read from the store and pre-filtered per batch.
SCAN_BATCH = 4096
# How long a brand change waits for the listing store and the open flags to catch up with
# their topics before it is handled with what was read (a stuck transaction on listing-status).
CATCH_UP_S = 30.0
POLL_BATCH = 1000
DELIVERY_TIMEOUT_MS = 30_000


@dataclass
class HandledChange:
    delta: BrandDelta
    candidates: int     # live listings the pre-filter kept
    scanned: int        # live listings read
    open_flags: int     # open flags re-checked
    sent: int           # rescans sent
    seconds: float


class LiveListings:
    """The latest record of every live listing, and the worker's positions, in one store."""

    def __init__(self, path: Path):
        path.mkdir(parents=True, exist_ok=True)
        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        self._db = Rdict(str(path), options=opts)

    def position(self, prefix: bytes, partition: int) -> int | None:
        raw = self._db.get(prefix + str(partition).encode())
        return int(raw) if raw is not None else None

    def set_position(self, prefix: bytes, partition: int, offset: int) -> None:
        self._db[prefix + str(partition).encode()] = str(offset).encode()

    def apply(self, records: list[tuple[int, int, bytes | None]]) -> int:
        """Listing records (partition, offset, value) in one write batch with the positions
        after them; returns how many changed the store."""
        wb = WriteBatch(raw_mode=True)
        ends: dict[int, int] = {}
        n = 0
        for p, o, raw in records:
            ends[p] = o + 1
            if raw is None:
                continue
            lid, live = live_listing_id(raw)
            if lid is None:
                continue
            if live:
                wb.put(_LISTING + lid.encode(), pack_content(p, o, raw))
            else:
                wb.delete(_LISTING + lid.encode())
            n += 1
        for p, o in ends.items():
            wb.put(_LISTINGS_POS + str(p).encode(), str(o).encode())
        self._db.write(wb)
        return n

    def get(self, listing_id: str) -> tuple[int, int, bytes] | None:
        v = self._db.get(_LISTING + listing_id.encode())
        return unpack_content(v) if v is not None else None

    def scan(self, batch: int = SCAN_BATCH):
        """Every live listing as batches of (listing_id, partition, offset, raw)."""
        out = []
        for k, v in self._db.items(from_key=_LISTING):
            if not k.startswith(_LISTING):
                break
            p, o, raw = unpack_content(v)
            out.append((k[len(_LISTING):].decode(), p, o, raw))
            if len(out) >= batch:
                yield out
                out = []
        if out:
            yield out

    def close(self) -> None:
        self._db.close()


class RetroWorker:
    def __init__(self, kafka: KafkaTarget, topics, store_dir: Path,
                 on_handled: Callable[[HandledChange], None] | None = None, processes: int = 1):
        """`processes`: the live listings are pre-filtered in this many processes (1: in this one)."""
        self.processes = processes
        self.topics = topics
        self.kafka = kafka
        self.store = LiveListings(store_dir)
        self.brands: dict[str, BrandReference] = {}
        self.open = OpenFlags()
        self.pending: list[tuple[int, int, BrandDelta]] = []
        self.handled: list[HandledChange] = []
        self.on_handled = on_handled
        # assigned partitions, positions in its own store: the group (a reader prefix, for the
        # ACLs of a secured cluster) never commits
        self._consumer = consumer(kafka, {"group.id": f"zeroscan-follower-retro-{uuid.uuid4()}",
                                          "enable.auto.commit": False,
                                          "enable.partition.eof": True, "isolation.level": "read_committed"})
        self._producer = producer(kafka, {"enable.idempotence": True, "acks": "all", "linger.ms": 20,
                                          "delivery.timeout.ms": DELIVERY_TIMEOUT_MS,
                                          "message.max.bytes": (1 << 20) + (128 << 10)})
        self._eof: dict[tuple[str, int], int] = {}
        self._pos: dict[tuple[str, int], int] = {}
        assign = []
        for topic, prefix in ((topics.listings, _LISTINGS_POS), (topics.brands, None), (topics.status, None)):
            for p in topic_partitions(self._consumer, topic):
                start = self.store.position(prefix, p) if prefix is not None else None
                assign.append(TopicPartition(topic, p, start if start is not None else OFFSET_BEGINNING))
        self._consumer.assign(assign)
        self._partitions = [(tp.topic, tp.partition) for tp in assign]

    # --- reading ---------------------------------------------------------------------------
    def poll(self, timeout_s: float = 0.2) -> int:
        msgs = self._consumer.consume(POLL_BATCH, timeout_s)
        listings: list[tuple[int, int, bytes | None]] = []
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    self._eof[(m.topic(), m.partition())] = m.offset()
                else:
                    log.warning("retro worker: %s", err)
                continue
            t, p, o = m.topic(), m.partition(), m.offset()
            self._pos[(t, p)] = o + 1
            if t == self.topics.listings:
                listings.append((p, o, m.value()))
            elif t == self.topics.status:
                self.open.apply(m.key(), m.value())
            elif t == self.topics.brands:
                self._brand(p, o, m.key(), m.value())
        if listings:
            self.store.apply(listings)
        return len(msgs)

    def _brand(self, p: int, o: int, key: bytes | None, value: bytes | None) -> None:
        if value is None:   # a compaction tombstone: the withdrawal record came before it
            if key:
                self.brands.pop(key.decode("utf-8", "replace"), None)
            return
        try:
            new = parse_brand(value)
        except ContractError as e:
            log.warning("retro worker: refused brand record at %d: %s", o, e)
            return
        old = self.brands.get(new.brand_id)
        if old is not None and new.version <= old.version:
            return
        self.brands[new.brand_id] = new
        done = self.store.position(_BRANDS_POS, p) or 0
        if o < done:
            return   # handled before a restart
        delta = brand_delta(old, new)
        if delta is not None:
            self.pending.append((p, o, delta))
        elif not self.pending:   # nothing to do; never past a change still to handle
            self.store.set_position(_BRANDS_POS, p, o + 1)

    def caught_up(self, targets: dict[tuple[str, int], int]) -> bool:
        return all(self._pos.get(tp, 0) >= end or self._eof.get(tp, -1) >= end for tp, end in targets.items())

    def _ends(self, topic: str) -> dict[tuple[str, int], int]:
        out = {}
        for t, p in self._partitions:
            if t == topic:
                out[(t, p)] = self._consumer.get_watermark_offsets(TopicPartition(t, p), timeout=10)[1]
        return out

    def catch_up(self, timeout_s: float = CATCH_UP_S) -> bool:
        """Read until the listings and listing-status ends (as of now) are reached."""
        targets = {**self._ends(self.topics.listings), **self._ends(self.topics.status)}
        deadline = time.monotonic() + timeout_s
        while not self.caught_up(targets):
            if time.monotonic() > deadline:
                log.warning("retro worker: not caught up within %.0fs (%s); handling with what was read",
                            timeout_s, targets)
                return False
            self.poll(0.1)
        return True

    # --- handling ---------------------------------------------------------------------------
    def handle(self, deltas: list[BrandDelta]) -> list[HandledChange]:
        """Rescans for these brand changes: each one's open flags, and the live listings its
        pre-filter keeps. Changes that read live listings share one pass over the store (a
        bulk approval, or a new worker's first start, reads it once): a listing kept by the
        combined pre-filter is attributed to the first change whose own pre-filter keeps it."""
        t0 = time.perf_counter()
        errors: list[str] = []

        def on_delivery(err, _msg) -> None:
            if err is not None:
                errors.append(str(err))

        sent: set[str] = set()
        per = {id(d): [0, 0, 0] for d in deltas}   # candidates, open flags, rescans

        def send(delta: BrandDelta, lid: str, p: int, o: int, raw: bytes) -> None:
            if lid in sent:
                return
            sent.add(lid)
            per[id(delta)][2] += 1
            produce_waiting(self._producer, self.topics.rescan,
                            rescan_record(lid, raw, self.topics.listings, p, o, delta), lid.encode(),
                            on_delivery=on_delivery)

        for delta in deltas:
            open_ids = self.open.of(delta.brand_id, delta.only_sellers) if delta.recheck_open else []
            per[id(delta)][1] = len(open_ids)
            for lid in open_ids:
                found = self.store.get(lid)
                if found is not None:   # not live any more: the job cleared it on the delete
                    send(delta, lid, *found)
        live = [(d, b) for d in deltas if d.scans_live and (b := self.brands.get(d.brand_id)) is not None
                and not b.deleted]
        scanned = 0
        if live:
            filters = [(d, PreFilter(b, d)) for d, b in live]
            pre = filters[0][1] if len(filters) == 1 else PreFilter.union([(b, d) for d, b in live])
            held: list[list[tuple[str, int, int, bytes]]] = []

            def raws():
                for batch in self.store.scan():
                    held.append(batch)
                    yield [b[3] for b in batch]

            for picked in select_batches(pre, raws(), self.processes):
                batch = held.pop(0)
                scanned += len(batch)
                for i in picked:
                    lid, p, o, raw = batch[i]
                    delta = next((d for d, f in filters if len(filters) == 1 or f.candidate(raw)), filters[-1][0])
                    per[id(delta)][0] += 1
                    send(delta, lid, p, o, raw)
                self._producer.poll(0)
        remaining = self._producer.flush(DELIVERY_TIMEOUT_MS / 1000 + 5)
        if errors or remaining:
            raise RuntimeError(f"rescans for {len(deltas)} brand changes not acknowledged: "
                               f"{errors[0] if errors else f'{remaining} outstanding'}")
        seconds = time.perf_counter() - t0
        out = []
        for d in deltas:
            c, o, n = per[id(d)]
            done = HandledChange(d, c, scanned if d.scans_live else 0, o, n, seconds)
            log.info("retro: brand %s v%d (%s): %d live listings read, %d candidates, %d open flags, %d rescans, "
                     "%.2fs", d.brand_id, d.version, d.reason, done.scanned, c, o, n, seconds)
            out.append(done)
        return out

    def step(self, timeout_s: float = 0.2) -> None:
        """Read what arrived; handle the pending brand changes once caught up."""
        self.poll(timeout_s)
        if not self.pending:
            return
        self.catch_up()
        pending, self.pending = self.pending, []
        for done in self.handle([d for _p, _o, d in pending]):
            self.handled.append(done)
            if self.on_handled is not None:
                self.on_handled(done)
        ends: dict[int, int] = {}
        for p, o, _d in pending:
            ends[p] = max(ends.get(p, 0), o + 1)
        for p, o in ends.items():
            self.store.set_position(_BRANDS_POS, p, o)

    def run(self, stop) -> None:
        """Step until `stop.asked` (a connectors.stop_request.StopRequest)."""
        while not stop.asked:
            self.step()

    def close(self) -> None:
        try:
            self._producer.flush(10)
        finally:
            self._consumer.close()
            self.store.close()


def run_retro(kafka, topics, state_dir: Path, processes: int = 1, stop: threading.Event | None = None,
              on_handled: Callable[[HandledChange], None] | None = None) -> None:
    """Run the retro worker until `stop` is set (or SIGTERM/SIGINT in the main thread): `kafka`
    a KafkaClientConfig, `topics` the Topics, live listings kept under `state_dir`, the
    pre-filter in `processes` processes."""
    from connectors.stop_request import StopRequest

    request = StopRequest(stop).install()
    worker = RetroWorker(kafka, topics, state_dir, on_handled, processes)
    try:
        worker.run(request)
    finally:
        worker.close()
