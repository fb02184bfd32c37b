"""Unchanged re-posts stop on the Java side (pipelines.scanner_job.fingerprint_sql): the keyed
input step of the real job, on the local mini-cluster, over records given in order. What
reaches the scan is read from `keyed_in`; the clock is a column, so the re-check period is
crossed without waiting."""
from __future__ import annotations

import dataclasses
import json
import random

import pytest
from pyflink.table import DataTypes

from pipelines.scanner_job import define_keyed_input, make_table_env
from zeroscan.settings import Settings

pytestmark = pytest.mark.pipeline

DAY = 86_400


def listing(lid: str = "x1", t: int = 1, **fields) -> str:
    rec = {"listing_id": lid, "seller_id": "s1", "title": "Leather bag", "event_time": t,
           "price": {"amount": 10.0, "currency": "USD"}, **fields}
    return json.dumps(rec, separators=(",", ":"), ensure_ascii=False)


def reaching_scan(tmp_path, records: list[tuple[str, str]], recheck_s: int = DAY,
                  clock: list[int] | None = None, select: str = "pos", slots: int = 1 << 20,
                  view: str = "keyed_in", price_loop: bool = False) -> list:
    """The offsets (1, 2, ...) of the (input_kind, text) records that reach the scan; `select`:
    another column of `keyed_in` (ordered by offset); `slots`: the cache before the keyed step
    (0: none); `view`: `changed_here` for what that cache lets through to the keyed step;
    `price_loop`: price-only re-posts stop on the `quiet` records among them."""
    settings = dataclasses.replace(Settings.from_env(), state_dir=tmp_path / "state")
    t_env = make_table_env(settings, 1, kafka=False, overrides={"state.backend.type": "hashmap",
                                                                "execution.checkpointing.interval": None})
    clock = clock or [1_767_225_600] * len(records)
    # One ordered source (PyFlink writes the elements to a file it reads in order). Not a SQL
    # VALUES list: rows holding expressions (CASTs) become a UNION ALL of one-row sources,
    # which a streaming job interleaves in any order.
    rows = [(bytearray(text.encode()), i + 1, kind, now) for i, ((kind, text), now) in enumerate(zip(records, clock))]
    src = t_env.from_elements(rows, DataTypes.ROW([
        DataTypes.FIELD("value", DataTypes.BYTES()), DataTypes.FIELD("pos", DataTypes.BIGINT()),
        DataTypes.FIELD("input_kind", DataTypes.STRING()), DataTypes.FIELD("now_s", DataTypes.BIGINT())]))
    t_env.create_temporary_view("raw_src", src)
    t_env.execute_sql("CREATE TEMPORARY VIEW raw_in AS SELECT `value`, CAST(`value` AS STRING) AS `text`, "
                      "'listings' AS src, 0 AS part, pos, "
                      "input_kind, now_s FROM raw_src")
    define_keyed_input(t_env, recheck_s, now_s="now_s", cache_slots=slots, price_loop=price_loop)
    with t_env.sql_query(f"SELECT pos, {select} FROM {view}").execute().collect() as res:
        return [r[1] for r in sorted(res, key=lambda r: r[0])]


def test_a_re_post_differing_only_in_event_time_stops(tmp_path):
    recs = [("listing", listing(t=1)), ("listing", listing(t=2)), ("listing", listing(t=3)),
            ("listing", listing(t=4, price={"amount": 9.5, "currency": "USD"})),   # price changed
            ("listing", listing(t=5, price={"amount": 9.5, "currency": "USD"})),
            ("listing", listing(t=6)),                                              # back: differs from 5
            ("listing", listing(t=7, title="Leather  bag")),                        # one byte more
            ("listing", listing(lid="x2", t=8, title="Leather  bag"))]              # another listing
    assert reaching_scan(tmp_path, recs) == [1, 4, 6, 7, 8]


def test_records_a_parser_could_read_apart_are_always_scanned(tmp_path):
    same = listing(t=1)
    recs = [("listing", same),
            ("listing", same.replace('"event_time":1', '"event_time":"2026-01-01T00:00:00Z"')),
            ("listing", same.replace('"event_time":1', '"event_time":"2026-01-01T00:00:00Z"')),
            ("listing", same.replace('"event_time":1', '"event_time":-1')),
            ("listing", same.replace('"event_time":1', '"event_time":-1')),
            ("listing", same.replace('"event_time":1', '"event_time":12.5')),
            ("listing", same.replace('"event_time":1', '"event_time":12.5')),
            ("listing", same.replace('"event_time":1', '"event_time":99999999999999999999')),
            ("listing", same.replace('"event_time":1', '"event_time":99999999999999999999')),
            ("listing", listing(t=1, title="Leather bag \ufffd")),                # U+FFFD: maybe not UTF-8
            ("listing", listing(t=2, title="Leather bag \ufffd")),
            ("listing", same.replace('"event_time":1', '"event_time":1,"listing_id":"x9"')),  # duplicate key
            ("listing", same.replace('"event_time":1', '"event_time":2,"listing_id":"x9"'))]
    # A record without a valid integer event_time (a date-time string, -1, 12.5, one over 18
    # digits) or with U+FFFD in its text is not fingerprinted: scanned, even when it repeats the
    # one before byte for byte (its dead letter, if any, is written each time); so is the one
    # after it. The duplicate key: 13 is 12 but for its event_time, so it stops (both parsers
    # read the last key).
    assert reaching_scan(tmp_path, recs) == list(range(1, 13))


def test_a_record_the_keyed_step_cannot_read_reaches_the_scan_without_a_key(tmp_path):
    """JSON nested deeper than the keyed step's parser allows (1,000) is read by the scan's:
    it reaches the scan with no key, where it is refused (tests/unit/test_steps.py), so the
    re-post after it is compared with the record before it, which the scan did act on."""
    deep = listing(t=2)[:-1] + ',"z":' + "[" * 1010 + "]" * 1010 + "}"
    recs = [("listing", listing(t=1)), ("listing", deep), ("listing", listing(t=3))]
    assert reaching_scan(tmp_path, recs) == [1, 2]


def test_feedback_deletes_and_rescans_pass_and_what_follows_them_is_scanned(tmp_path):
    fb = json.dumps({"listing_id": "x1", "brand_id": "b1", "action": "removed", "event_time": 3})
    rescan = json.dumps({"listing_id": "x1", "brand_id": "b1", "brand_version": 2, "reason": "mark added",
                         "source": {"topic": "listings", "partition": 0, "offset": 1}, "listing": {}})
    recs = [("listing", listing(t=1)), ("feedback", fb), ("feedback", fb), ("listing", listing(t=2)),
            ("listing", listing(t=3)), ("rescan", rescan), ("rescan", rescan), ("listing", listing(t=4)),
            ("listing", listing(t=5, op="delete")), ("listing", listing(t=6, op="delete")),
            ("listing", listing(t=7))]
    assert reaching_scan(tmp_path, recs) == [1, 2, 3, 4, 6, 7, 8, 9, 11]


def test_feedback_is_given_the_latest_update_that_is_not_a_delete_however_its_op_is_written(tmp_path):
    """The kept record for judging feedback (LISTING_CONTEXT_SQL) skips deletes as the scanner
    reads them: a seller who writes the key or the value with JSON escapes still deletes (the
    scanner's parser decodes them), so the Java side's test decodes them too. One listing per
    case: its upsert, the second record, then a removal about it."""
    cases = {  # listing id: (second record, whether it is a delete)
        "plain": (listing("plain", t=2, op="delete"), True),
        "key": (listing("key", t=2).replace('"event_time"', '"\\u006fp":"delete","event_time"'), True),
        "key2": (listing("key2", t=2).replace('"event_time"', '"o\\u0070":"delete","event_time"'), True),
        "value": (listing("value", t=2, op="delete").replace("delete", "d\\u0065lete"), True),
        "title": (listing("title", t=2, title="Leather bag \u00e9").replace("\u00e9", "\\u00e9"), False),
    }
    recs = []
    for lid, (second, is_delete) in cases.items():
        assert (json.loads(second).get("op") == "delete") is is_delete, second
        recs += [("listing", listing(lid, t=1)), ("listing", second),
                 ("feedback", json.dumps({"listing_id": lid, "brand_id": "b1", "action": "removed", "event_time": 9}))]
    got = reaching_scan(tmp_path, recs, select="context_raw")
    kept = [got[i + 2] for i in range(0, len(recs), 3)]
    assert kept == [listing(lid, t=1) if is_delete else second for lid, (second, is_delete) in cases.items()]


def _period(partition: int, now_s: int, recheck_s: int) -> int:
    """The period a record falls in (fingerprint_sql: each Kafka partition at its own phase)."""
    return (now_s + (partition * 7919) % recheck_s) // recheck_s


def test_unchanged_content_is_scanned_again_once_per_period(tmp_path):
    t0 = 1_767_225_600
    clock = [t0 + s for s in (0, 10, DAY // 3, 2 * DAY // 3, DAY, DAY + 20, 2 * DAY + 30, 2 * DAY + 40, 5 * DAY)]
    recs = [("listing", listing(t=i)) for i in range(len(clock))]
    periods = [_period(0, now, DAY) for now in clock]
    want = [i + 1 for i, p in enumerate(periods) if i == 0 or p != periods[i - 1]]
    assert len(want) >= 4                     # the clock crosses at least three period ends
    assert reaching_scan(tmp_path, recs, clock=clock) == want


def test_with_the_period_zero_every_record_is_scanned(tmp_path):
    recs = [("listing", listing(t=i)) for i in range(4)]
    assert reaching_scan(tmp_path, recs, recheck_s=0) == [1, 2, 3, 4]


def test_file_mode_tags_are_read(tmp_path):
    recs = [("tagged", "L\t" + listing(t=1)), ("tagged", "L\t" + listing(t=2)),
            ("tagged", "F\t" + json.dumps({"listing_id": "x1", "brand_id": "b1", "action": "removed",
                                           "event_time": 3})),
            ("tagged", "L\t" + listing(t=4)), ("tagged", "L\t" + listing(t=5))]
    assert reaching_scan(tmp_path, recs) == [1, 3, 4]


def test_the_length_is_part_of_the_fingerprint(tmp_path):
    """Same canonical text, other length (an event_time with more digits): scanned, so a record
    over the contract's byte limit never shares a fingerprint with one under it."""
    recs = [("listing", listing(t=9)), ("listing", listing(t=10)), ("listing", listing(t=11)),
            ("listing", listing(t=99)), ("listing", listing(t=100))]
    assert reaching_scan(tmp_path, recs) == [1, 2, 5]


def test_most_re_posts_stop_before_the_keyed_step_and_it_stops_the_same(tmp_path):
    """The cache where records are read (zs_changed_here) stops the unchanged re-posts of a
    listing whose records one subtask reads, as the keyed step would; what it lets through the
    keyed step still judges, so what reaches the scan is the same with it, with a cache of two
    slots that 30 listings keep evicting from each other, and without it."""
    rng = random.Random(20261207)
    fb = '{"listing_id":"%s","brand_id":"b1","action":"removed","event_time":3}'
    recs, content = [], {}
    for i in range(600):
        lid = f"x{rng.randrange(30)}"
        roll = rng.random()
        if roll < 0.05:
            recs.append(("feedback", fb % lid))
            continue
        if roll < 0.25 or lid not in content:
            content[lid] = rng.choice(["Leather bag", "Leather bag ", "Canvas bag", "Leather  bag"])
        t = i if rng.random() < 0.95 else "-1"                           # -1: not fingerprinted
        recs.append(("listing", listing(lid, t=t, title=content[lid])))
    clock = [1_767_225_600 + 200 * i for i in range(len(recs))]          # crosses a period end
    keyed = reaching_scan(tmp_path / "a", recs, clock=clock, slots=0)
    assert reaching_scan(tmp_path / "b", recs, clock=clock) == keyed
    assert reaching_scan(tmp_path / "c", recs, clock=clock, slots=2) == keyed
    here = reaching_scan(tmp_path / "d", recs, clock=clock, view="changed_here")
    assert set(keyed) <= set(here)
    assert len(here) < len(keyed) + 0.1 * (len(recs) - len(keyed)), (len(recs), len(keyed), len(here))
    assert len(keyed) < 0.6 * len(recs)
    small = reaching_scan(tmp_path / "e", recs, clock=clock, slots=2, view="changed_here")
    assert set(here) <= set(small) and len(small) > len(here)
    assert reaching_scan(tmp_path / "f", recs, clock=clock, slots=0, view="changed_here") == list(range(1, len(recs) + 1))


def test_what_a_re_post_stopped_before_the_keyed_step_does_not_update(tmp_path):
    """A re-post stopped by the cache does not reach the keyed step: the newest listing offset
    and the update kept for feedback stay those of the first of the identical records (the
    same content; a rescan naming it is not stale)."""
    fb = json.dumps({"listing_id": "x1", "brand_id": "b1", "action": "removed", "event_time": 9})
    recs = [("listing", listing(t=1)), ("listing", listing(t=2)), ("listing", listing(t=3)), ("feedback", fb)]
    assert reaching_scan(tmp_path / "a", recs, select="listing_pos") == [1, 1]
    assert reaching_scan(tmp_path / "b", recs, select="context_raw") == [None, listing(t=1)]
    assert reaching_scan(tmp_path / "c", recs, select="listing_pos", slots=0) == [1, 3]
    assert reaching_scan(tmp_path / "d", recs, select="context_raw", slots=0) == [None, listing(t=3)]
