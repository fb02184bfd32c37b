"""Feedback into the loop and brand signals out of it: brand owners' removals and reviewers'
appeal answers become events on the `feedback` topic; a brand's open signals are its listings
whose latest decision flags them, read from `decisions`; its standing (accuracy, suspension)
is rebuilt from the feedback ledger the job writes."""
from __future__ import annotations

import time
from typing import Any

import orjson
from brand_signals.feedback import FeedbackState, LedgerKind, outcome_from_json
from brand_signals.records import FeedbackEvent
from connectors.brand_feed import TopicFollower
from connectors.kafka_client import KafkaTarget, producer
from connectors.kafka_io import consume


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
    """Latest flagging decision per listing, grouped by brand; a `clear` or a decision for
    another brand closes the listing's previous signal."""

    def __init__(self) -> None:
        self.by_brand: dict[str, dict[str, dict]] = {}
        self._brand_of: dict[str, str] = {}

    def apply(self, value: bytes | None) -> None:
        if value is None:
            return
        d = orjson.loads(value)
        lid, brand = d.get("listing_id"), d.get("brand_id")
        old = self._brand_of.pop(lid, None)
        if old is not None:
            self.by_brand.get(old, {}).pop(lid, None)
        if d.get("action") != "clear" and brand:
            self.by_brand.setdefault(brand, {})[lid] = d
            self._brand_of[lid] = brand


def open_signals(kafka: KafkaTarget, decisions_topic: str, brand_id: str) -> list[dict]:
    """One pass over `decisions`: the brand's listings whose latest decision flags them."""
    index = _OpenSignals()
    for _k, v, _p, _o in consume(kafka, decisions_topic, stop_at_end=True):
        index.apply(v)
    return list(index.by_brand.get(brand_id, {}).values())


class SignalIndex:
    """Open signals per brand, kept current by following `decisions` (for the API server)."""

    def __init__(self, kafka: KafkaTarget, decisions_topic: str):
        self._open = _OpenSignals()
        self._follower = TopicFollower(kafka, decisions_topic, lambda _k, v: self._open.apply(v),
                                       debounce_s=0.0)

    def signals(self, brand_id: str) -> list[dict]:
        with self._follower.lock:
            return list(self._open.by_brand.get(brand_id, {}).values())

    def close(self) -> None:
        self._follower.close()


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
    }


class StandingIndex:
    """Brands' standing, kept current by following the feedback ledger (for the API server)."""

    def __init__(self, kafka: KafkaTarget, ledger_topic: str):
        from connectors.brand_feed import LedgerFeed

        self._feed = LedgerFeed(kafka, ledger_topic)

    def standing(self, brand_id: str) -> dict[str, Any]:
        with self._feed.reading():
            return standing_of(self._feed.state, brand_id, int(time.time() * 1000))

    def close(self) -> None:
        self._feed.close()
