"""Feedback into the loop and brand signals out of it: brand owners' removals and reviewers'
appeal answers become events on the `feedback` topic; a brand's open signals are its listings
whose latest decision flags them, read from `decisions`; its standing (accuracy, suspension)
is rebuilt from the feedback ledger the job writes."""
from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from typing import Any

import orjson
from confluent_kafka import TopicPartition

from brand_signals.feedback.ledger import LedgerEvent, LedgerKind, outcome_from_json
from brand_signals.feedback.state import FeedbackState
from brand_signals.records import FeedbackEvent
from connectors.brand_feed import TopicFollower
from connectors.kafka_client import KafkaTarget, consumer, producer
from connectors.kafka_io import consume, reader_config

# Listings read back for the portal (by source offset): the wait for one, and how many are kept.
LOOKUP_TIMEOUT_S = 3.0
LOOKUP_CACHE = 4096


def feedback_obj(ev: FeedbackEvent) -> dict[str, Any]:
    d: dict[str, Any] = {"kind": ev.kind.value, "listing_id": ev.listing_id, "brand_id": ev.brand_id,
                         "event_time": ev.event_time_ms}
    if ev.actor:
        d["actor"] = ev.actor
    if ev.reason:
        d["reason"] = ev.reason
    return d


class FeedbackPublisher:
    """Sends feedback events keyed by listing_id; `submit` returns once the broker has them."""

    def __init__(self, kafka: KafkaTarget, topic: str):
        self.topic = topic
        self._producer = producer(kafka, {"enable.idempotence": True})

    def submit(self, ev: FeedbackEvent) -> dict[str, Any]:
        obj = feedback_obj(ev)
        errors: list[str] = []
        self._producer.produce(self.topic, key=ev.listing_id.encode(), value=orjson.dumps(obj),
                               on_delivery=lambda err, _m: errors.append(str(err)) if err else None)
        if self._producer.flush(10) or errors:
            raise RuntimeError(f"feedback event not delivered to {self.topic}: {errors or 'timeout'}")
        return obj

    def close(self) -> None:
        self._producer.flush(10)


class _OpenSignals:
    """Latest decision per listing and brand, grouped by brand: a brand's `clear` closes that
    brand's signal on the listing only (a listing flagged for two brands is open for both)."""

    def __init__(self) -> None:
        self.by_brand: dict[str, dict[str, dict]] = {}

    def apply(self, value: bytes | None) -> None:
        if value is None:
            return
        d = orjson.loads(value)
        lid, brand = d.get("listing_id"), d.get("brand_id")
        if not brand:
            return
        if d.get("action") == "clear":
            self.by_brand.get(brand, {}).pop(lid, None)
        else:
            self.by_brand.setdefault(brand, {})[lid] = d


def open_signals(kafka: KafkaTarget, decisions_topic: str, brand_id: str) -> list[dict]:
    """One pass over `decisions`: the brand's listings whose latest decision flags them."""
    index = _OpenSignals()
    for _k, v, _p, _o in consume(kafka, decisions_topic, stop_at_end=True):
        index.apply(v)
    return list(index.by_brand.get(brand_id, {}).values())


class SignalIndex:
    """Open signals per brand, kept current by following `decisions` (for the API server). With
    `listings_topic`, `listing_of` reads the listing a decision was made on, where the decision
    names its source record ({"source": {"partition", "offset"}})."""

    def __init__(self, kafka: KafkaTarget, decisions_topic: str, listings_topic: str | None = None):
        self._open = _OpenSignals()
        self._follower = TopicFollower(kafka, decisions_topic, lambda _k, v: self._open.apply(v),
                                       debounce_s=0.0)
        self._kafka, self._listings_topic = kafka, listings_topic
        self._listings: OrderedDict[tuple[int, int], dict | None] = OrderedDict()
        self._reader = None
        self._reader_lock = threading.Lock()

    def signals(self, brand_id: str) -> list[dict]:
        with self._follower.lock:
            return list(self._open.by_brand.get(brand_id, {}).values())

    def listing_of(self, decision: dict) -> dict | None:
        """The listing record a decision names as its source, or None (no source, not readable)."""
        src = decision.get("source")
        if self._listings_topic is None or not isinstance(src, dict):
            return None
        if src.get("topic", self._listings_topic) != self._listings_topic:
            return None     # made from another record (a removal's feedback event), not a listing
        try:
            where = (int(src["partition"]), int(src["offset"]))
        except (KeyError, TypeError, ValueError):
            return None
        with self._reader_lock:
            if where in self._listings:
                self._listings.move_to_end(where)
                return self._listings[where]
            if self._reader is None:
                self._reader = consumer(self._kafka, reader_config(group_prefix="zeroscan-listing-lookup"))
            got, read = None, False
            self._reader.assign([TopicPartition(self._listings_topic, where[0], where[1])])
            deadline = time.monotonic() + LOOKUP_TIMEOUT_S
            while time.monotonic() < deadline:
                m = self._reader.poll(0.2)
                if m is None or m.error() is not None:
                    continue
                read = True
                if m.offset() == where[1] and m.value() is not None:
                    try:
                        got = orjson.loads(m.value())
                    except orjson.JSONDecodeError:
                        got = None
                break
            got = got if isinstance(got, dict) else None
            if not read:        # not answered in time: asked again on the next page
                return None
            self._listings[where] = got
            while len(self._listings) > LOOKUP_CACHE:
                self._listings.popitem(last=False)
            return self._listings[where]

    def close(self) -> None:
        self._follower.close()
        with self._reader_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None


def brand_standing(kafka: KafkaTarget, ledger_topic: str, brand_id: str, now_ms: int,
                   state: FeedbackState | None = None) -> dict[str, Any]:
    """Accuracy, suspension and removal counts of a brand, from the feedback ledger."""
    state = state or FeedbackState()
    for _k, v, _p, _o in consume(kafka, ledger_topic, stop_at_end=True):
        ev = outcome_from_json(orjson.loads(v)) if v is not None else None
        if ev is not None:
            state.apply(ev)
    return standing_of(state, brand_id, now_ms)


def standing_of(state: FeedbackState, brand_id: str, now_ms: int) -> dict[str, Any]:
    acc, decided = state.accuracy(brand_id, now_ms)
    return {
        "brand_id": brand_id,
        "accuracy": acc,
        "decided_removals": decided,
        "accuracy_bar": state.policy.accuracy_bar,
        "window_days": state.policy.window_ms // 86_400_000,
        "self_service_suspended": state.suspended(brand_id, now_ms),
        "removals": {k.value: state.count(brand_id, k) for k in LedgerKind},
        "notifications": [{"event_time": t, "self_service": status} for t, status in state.status_changes(brand_id)],
        "trend": [{"event_time": t, "accuracy": a, "decided": n} for t, a, n in state.accuracy_trend(brand_id)],
    }


# Ledger events kept per brand for its removal history (the newest; older ones stay in the topic).
HISTORY_PER_BRAND = 1000


class StandingIndex:
    """Brands' standing and removal history, kept current by following the feedback ledger (for
    the API server)."""

    def __init__(self, kafka: KafkaTarget, ledger_topic: str, history_per_brand: int = HISTORY_PER_BRAND):
        from connectors.brand_feed import LedgerFeed

        self._history: dict[str, deque] = {}
        self._history_len = history_per_brand
        self._feed = LedgerFeed(kafka, ledger_topic, listener=self._remember)

    def _remember(self, ev: LedgerEvent) -> None:
        self._history.setdefault(ev.brand_id, deque(maxlen=self._history_len)).append(ev)

    def standing(self, brand_id: str) -> dict[str, Any]:
        with self._feed.reading():
            return standing_of(self._feed.state, brand_id, int(time.time() * 1000))

    def history(self, brand_id: str) -> list[dict[str, Any]]:
        """The brand's judged removals and appeals, newest first: outcome, reason, who and when."""
        with self._feed.reading():
            events = list(self._history.get(brand_id, ()))
        return [{k: v for k, v in ev.to_json().items() if k != "fingerprint"} for ev in reversed(events)]

    def close(self) -> None:
        self._feed.close()
