"""Serialisation at the edges: decision and dead-letter records as the bytes that go to Kafka
or to files. Dead letters keep the reason, where the record came from, and the record itself
(up to a cap, with its size and hash), so nothing is lost and the source can be re-read.
"""
from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from brand_signals.records import Decision

# The original record is kept inline up to this size; beyond it the dead letter keeps the
# head, the full size and the sha256, and the source coordinates point at the original.
DEAD_LETTER_RECORD_BYTES = 64 << 10


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a record came from: Kafka topic/partition/offset, or a file and line."""

    source: str
    partition: int | None = None
    offset: int | None = None
    line: int | None = None

    def to_json(self) -> dict[str, Any]:
        if self.partition is None and self.offset is None:
            return {"file": self.source, **({"line": self.line} if self.line else {})}
        return {"topic": self.source, "partition": self.partition, "offset": self.offset}


def dead_letter(reason: str, raw: bytes | None, origin: Origin, now_ms: int,
                listing_id: str | None = None) -> str:
    rec: dict[str, Any] = {"reason": reason, "origin": origin.to_json(), "dead_at": now_ms}
    if listing_id is not None:
        rec["listing_id"] = listing_id
    if raw is None:
        rec["record"] = None
    else:
        head = raw[:DEAD_LETTER_RECORD_BYTES]
        try:
            rec["record"] = head.decode("utf-8")
        except UnicodeDecodeError:
            rec["record_base64"] = base64.b64encode(head).decode("ascii")
        if len(raw) > DEAD_LETTER_RECORD_BYTES:
            rec["record_truncated"] = True
        rec["record_bytes"] = len(raw)
        rec["record_sha256"] = hashlib.sha256(raw).hexdigest()
    return orjson.dumps(rec).decode()


def decision_json(d: Decision) -> str:
    return orjson.dumps(d.to_json()).decode()


def clear_prefix(listing_id: str, seller_id: str, now_ms: int, reason: str, event_time: int | None = None,
                 source: Origin | None = None, rescan: dict[str, Any] | None = None) -> str:
    """A `clear` decision for a listing whose previous brand is only known downstream: the JSON
    up to `"brand_id":`, which the job completes with the previously flagged brand. `event_time`
    and `source`: the record that cleared it, as on every decision."""
    rec: dict[str, Any] = {
        "listing_id": listing_id, "seller_id": seller_id, "action": "clear", "score": 0.0,
        "signals": [{"kind": "rescan", "score": 0.0, "detail": {"reason": reason}}], "decided_at": now_ms,
    }
    if event_time is not None:
        rec["event_time"] = event_time
    if source is not None:
        rec["source"] = source.to_json()
    if rescan is not None:
        rec["rescan"] = rescan
    return orjson.dumps(rec).decode()[:-1] + ',"brand_id":'
