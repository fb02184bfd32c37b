"""File mode input: listings and feedback files merged into one tagged stream, in event-time
order between the two files (each file's own order is kept), so a removal acts on the
listings posted before it and a near-duplicate posted after it is judged with it. Each line is
`<stream><line number>\\t<original bytes>`; the scan operator splits the tag, and dead letters
name the original file and line."""
from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import BinaryIO, Iterator

import orjson

from brand_signals.contract import ContractError, parse_event_time

LISTING_TAG = b"L"
FEEDBACK_TAG = b"F"


def _event_time(line: bytes) -> float:
    """Event time of a record, or -inf when it has none we can read (it goes out at once and
    becomes a dead letter downstream)."""
    try:
        obj = orjson.loads(line)
        return float(parse_event_time(obj["event_time"])) if isinstance(obj, dict) else -math.inf
    except (orjson.JSONDecodeError, ContractError, KeyError):
        return -math.inf


def _lines(f: BinaryIO, tag: bytes, timed: bool) -> Iterator[tuple[float, bytes]]:
    """(event time, or 0 when not `timed`; tagged record) per non-empty line."""
    for n, line in enumerate(f, 1):
        line = line.rstrip(b"\r\n")
        if line.strip():
            yield _event_time(line) if timed else 0.0, tag + str(n).encode() + b"\t" + line


def merge_tagged(listings: Path, feedback: Path | None, out: Path) -> int:
    """Write the tagged stream; returns the number of records."""
    n = 0
    with open(listings, "rb") as fl, open(out, "wb") as fo, \
            (open(feedback, "rb") if feedback is not None else contextlib.nullcontext(())) as ff:
        fb = _lines(ff, FEEDBACK_TAG, timed=True) if feedback is not None else iter(())
        pending = next(fb, None)
        for t, rec in _lines(fl, LISTING_TAG, timed=feedback is not None):
            while pending is not None and pending[0] < t:
                fo.write(pending[1] + b"\n")
                n += 1
                pending = next(fb, None)
            fo.write(rec + b"\n")
            n += 1
        while pending is not None:
            fo.write(pending[1] + b"\n")
            n += 1
            pending = next(fb, None)
    return n


def split_tag(value: bytes) -> tuple[str, int, bytes]:
    """(stream, line number, original bytes) of one tagged record."""
    head, _, raw = value.partition(b"\t")
    stream = "feedback" if head[:1] == FEEDBACK_TAG else "listing"
    return stream, int(head[1:] or 0), raw
