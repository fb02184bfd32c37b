"""The job's Java functions (pipelines/java) on the local mini-cluster: the content fingerprint
gives what the SQL it replaced gave (so state taken by one is read by the other) and what its
specification says (a Python reading of it), on records built to tell them apart; the byte
length is the record's size in UTF-8 bytes."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import re

import orjson
import pytest
from pyflink.table import DataTypes

from pipelines.scanner_job import _sql_str, make_table_env, register_java_functions
from zeroscan.settings import Settings

pytestmark = pytest.mark.pipeline

# The integer event_time of the specification: Java's and Python's regular expressions read it
# alike.
EVENT_TIME_INT_RE = r'"event_time"[ \t\n\r]*:[ \t\n\r]*(0|[1-9][0-9]{0,17})(?=[ \t\n\r]*[,}])'
_RE = re.compile(EVENT_TIME_INT_RE)

# The SQL the Java function replaced (fingerprint_sql before it, less the period).
REPLACED_SQL = (f"CASE WHEN NOT REGEXP(`text`, '\\uFFFD') AND REGEXP(`text`, {_sql_str(EVENT_TIME_INT_RE)}) "
                f"THEN CONCAT(SHA256(REGEXP_REPLACE(`text`, {_sql_str(EVENT_TIME_INT_RE)}, '\"event_time\":0')), "
                "'/', CAST(CHAR_LENGTH(`text`) AS STRING)) END")


def specified(raw: bytes) -> str | None:
    """The fingerprint as specified: valid UTF-8 without U+FFFD, at least one integer event_time."""
    if not _valid_utf8(raw):
        return None
    text = raw.decode("utf-8")
    if "\ufffd" in text or not _RE.search(text):
        return None
    return hashlib.sha256(_RE.sub('"event_time":0', text).encode()).hexdigest() + "/" + str(len(text))


def _valid_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


BASE = '{"listing_id":"x1","title":"Leather bag","event_time":%s,"price":{"amount":10.0,"currency":"USD"}}'
RECORDS: list[bytes] = [
    (BASE % "1").encode(), (BASE % "1234567").encode(), (BASE % "0").encode(),
    (BASE % "00").encode(), (BASE % "0012").encode(), (BASE % "-1").encode(), (BASE % "12.5").encode(),
    (BASE % "1e3").encode(), (BASE % '"2026-01-01T00:00:00Z"').encode(),
    (BASE % ("9" * 18)).encode(), (BASE % ("9" * 19)).encode(), (BASE % ("1" + "0" * 20)).encode(),
    b'{"listing_id":"x1","event_time" \t\n\r: \r\n 42 \t}', b'{"event_time":42]', b'{"event_time":42',
    b'{"event_time":42 , "a":{"event_time":7},"b":[{"event_time" : 0}],"event_time":5}',
    b'{"t":"\\"event_time\\":5,","event_time":3}', b'{"t":"\\"event_time\\":5,"}',
    b'{"event_time":1,"event_time":x,"event_time":2}', b'{"event_time":"event_time":3,}',
    b'"event_time":"event_time""event_time":4}', b'', b'{}', b'{"event_time":}',
    ('{"title":"caf\u00e9 \u65e5\u672c \U0001F45C","event_time":8}').encode(),
    ('{"title":"\ufffd","event_time":8}').encode(),
    b'{"title":"\xff","event_time":8}', b'{"title":"\x80","event_time":8}',
    b'{"title":"\xc0\x80","event_time":8}', b'{"title":"\xed\xa0\x80","event_time":8}',
    b'{"title":"\xf4\x90\x80\x80","event_time":8}', b'{"title":"\xf5\x80\x80\x80","event_time":8}',
    b'{"title":"\xe6\x97","event_time":8}', b'{"title":"x","event_time":8}\xf0\x9f\x91',
    b'{"title":"\xe0\x9f\xbf","event_time":8}', b'{"title":"\xf0\x8f\xbf\xbf","event_time":8}',
]


def over_texts(tmp_path, records: list[bytes], columns: str) -> dict[int, tuple]:
    """`columns` (SQL over `text`, the job's Java functions registered) for each record, by its
    index; the records are read as bytes and cast to text, as the job reads them."""
    settings = dataclasses.replace(Settings.from_env(), state_dir=tmp_path / "state")
    t_env = make_table_env(settings, 1, kafka=False, overrides={"execution.checkpointing.interval": None})
    register_java_functions(t_env)
    src = t_env.from_elements([(bytearray(r), i) for i, r in enumerate(records)], DataTypes.ROW([
        DataTypes.FIELD("value", DataTypes.BYTES()), DataTypes.FIELD("i", DataTypes.BIGINT())]))
    t_env.create_temporary_view("src", src)
    t_env.execute_sql("CREATE TEMPORARY VIEW texts AS SELECT i, CAST(`value` AS STRING) AS `text` FROM src")
    with t_env.sql_query(f"SELECT i, {columns} FROM texts").execute().collect() as res:
        return {r[0]: tuple(r[1:]) for r in res}


def test_the_fingerprint_is_the_replaced_sqls_and_the_specified_one(tmp_path):
    got = over_texts(tmp_path, RECORDS, f"zs_content_fingerprint(`text`), {REPLACED_SQL}, zs_byte_length(`text`)")
    assert sorted(got) == list(range(len(RECORDS)))
    fingerprinted = 0
    for i, raw in enumerate(RECORDS):
        java, replaced, size = got[i]
        assert java == specified(raw), raw
        if _valid_utf8(raw):      # invalid: the cast from bytes put U+FFFD in the text
            assert size == len(raw), raw
        # The SQL reads invalid UTF-8 as U+FFFD and so refuses it too; on everything else the
        # two agree byte for byte.
        assert java == replaced, raw
        fingerprinted += java is not None
    assert fingerprinted >= 10


def _nested(depth: int) -> bytes:
    """A record whose `z` holds arrays nested so that the deepest is container `depth`, the
    top-level object counted."""
    return b'{"listing_id":"x1","z":' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


# Records built to tell a top-level listing_id reader from JSON_VALUE's: escapes, duplicates,
# nesting, whitespace, every kind of JSON that is not well-formed.
LISTING_IDS: list[bytes] = [
    b'{"listing_id":"x1"}', b' \t\r\n{ "listing_id" \n: \t"x1" } ', b'{"a":1,"listing_id":"x1","b":[1,2]}',
    b'{"listing_id":"x1","listing_id":"x2"}', b'{"listing_id":"x1","b":{"listing_id":"x2"}}',
    b'{"b":{"listing_id":"x2"},"listing_id":"x1"}', b'{"b":[{"listing_id":"x2"}]}', b'[{"listing_id":"x1"}]',
    b'{"listing\\u005fid":"x1"}', b'{"listing_id":"x\\u0031"}', b'{"listing_id":"a\\"b\\\\c\\/d\\b\\f\\n\\r\\t"}',
    b'{"listing_id":"\\ud83d\\udc5c"}', b'{"listing_id":"\\u00e9\\u65e5"}', '{"listing_id":"caf\u00e9 \U0001F45C"}'.encode(),
    b'{"listing_id":""}', b'{"LISTING_ID":"x1"}', b'{"listing_id ":"x1"}', b'{"listing_idx":"x1"}',
    b'{"listing_id":"x1"} trailing', b'{"listing_id":"x1"}}', b'{}', b'', b'   ', b'null', b'"x1"',
    b'{"listing_id":"x1",}', b'{"listing_id":"x1" "b":1}', b'{"listing_id" "x1"}', b'{listing_id:"x1"}',
    b"{'listing_id':'x1'}", b'{"listing_id":"x1', b'{"listing_id":"x1"', b'{"listing_id":"x\x01"}',
    b'{"listing_id":"x\\x"}', b'{"listing_id":"x\\u12"}', b'{"listing_id":"x\\u12g4"}',
    b'{"a":01,"listing_id":"x1"}', b'{"a":-0,"listing_id":"x1"}', b'{"a":1.,"listing_id":"x1"}',
    b'{"a":.5,"listing_id":"x1"}', b'{"a":+1,"listing_id":"x1"}', b'{"a":1e5,"listing_id":"x1"}',
    b'{"a":-1.5E-3,"listing_id":"x1"}', b'{"a":1e,"listing_id":"x1"}', b'{"a":tru,"listing_id":"x1"}',
    b'{"a":true,"b":false,"c":null,"listing_id":"x1"}', b'{"a":truex,"listing_id":"x1"}',
    b'{"a":[1,],"listing_id":"x1"}', b'{"a":[,1],"listing_id":"x1"}', b'{"a":{"k":1,},"listing_id":"x1"}',
    b'{"a":{"k"},"listing_id":"x1"}', b'{"a":{1:2},"listing_id":"x1"}', b'{"a":[}],"listing_id":"x1"}',
    b'{"a":[[[]]],"listing_id":"x1","b":{"c":{"d":[{"e":"]}"}]}}}', b'{"a":"\\"}\\"","listing_id":"x1"}',
    b'{"a":NaN,"listing_id":"x1"}', b'{"a":[1 2],"listing_id":"x1"}', b'{"listing_id":"x1"}/*c*/',
    b'{"listing_id":"x1",/*c*/"b":1}', b'{"listing_id":"x1"\x00}',
    _nested(999), _nested(1000), _nested(1001), _nested(1010),
]
# A value that is not a string gives NULL here (JSON_VALUE gives its text); a lone surrogate
# too (Jackson keeps it in a Java string). The scan refuses all of these.
NOT_STRINGS = [b'{"listing_id":12}', b'{"listing_id":1.50}', b'{"listing_id":true}', b'{"listing_id":null}',
               b'{"listing_id":{"a":"x1"}}', b'{"listing_id":["x1"]}', b'{"listing_id":"x1","listing_id":7}',
               b'{"listing_id":"\\ud83d"}', b'{"listing_id":"\\udc5c"}', b'{"listing_id":"\\ud83dx"}']


def _mutations(rng: random.Random, base: list[bytes], n: int) -> list[bytes]:
    """Records one to three edits away from valid ones: a byte dropped, doubled or replaced by
    one that JSON gives meaning to."""
    out = []
    for _ in range(n):
        r = bytearray(rng.choice(base))
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(r))
            op = rng.random()
            if op < 0.35:
                del r[at]
            elif op < 0.6:
                r.insert(at, r[at])
            else:
                r[at] = ord(rng.choice('{}[]",:\\ 0-e.tnu'))
        out.append(bytes(r))
    return out


def _lone_surrogate(raw: bytes) -> bool:
    """Whether the listing_id, read as Python's json reads it (lone surrogates kept), holds one."""
    try:
        lid = json.loads(raw).get("listing_id")
    except (ValueError, AttributeError, RecursionError):
        return False
    return isinstance(lid, str) and any(0xD800 <= ord(c) <= 0xDFFF for c in lid)


def test_the_listing_id_is_json_values_for_every_string(tmp_path):
    """zs_listing_id reads what JSON_VALUE reads, on handmade records, on the bench's generated
    listings and on 3,000 records a few edits from them; NULL for a value that is not a string,
    which the scan's own reading (orjson) refuses. Where both read none and the scan reads one
    (nesting past 1,000, which orjson reads to 1,024), the scan refuses the record as read
    apart (tests/pipeline/test_unchanged.py)."""
    from benchmarks.traffic import Traffic, brand_records
    rng = random.Random(20261207)
    generated = list(Traffic(brand_records(200)).lines(400))
    records = LISTING_IDS + NOT_STRINGS + generated + _mutations(rng, generated + LISTING_IDS[:12], 3000)
    got = over_texts(tmp_path, records, "zs_listing_id(`text`), JSON_VALUE(`text`, '$.listing_id')")
    assert sorted(got) == list(range(len(records)))
    differ = []
    for i, raw in enumerate(records):
        ours, json_value = got[i]
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            parsed = None
        scans = parsed.get("listing_id") if isinstance(parsed, dict) else None
        if raw in NOT_STRINGS or (ours is None and _lone_surrogate(raw)):
            assert ours is None, raw
        elif ours != json_value:
            differ.append(raw)
        elif isinstance(scans, str) and ours is not None:   # a record the scan reads alike
            assert ours == scans, raw
    assert differ == [], differ[:20]
    assert sum(v[0] is not None for v in got.values()) > 1500
    by_raw = {raw: got[i][0] for i, raw in enumerate(records)}
    assert [by_raw[_nested(d)] for d in (999, 1000, 1001, 1010)] == ["x1", "x1", None, None]
    assert by_raw[b'{"listing_id":"x1","listing_id":"x2"}'] == "x2"
    assert by_raw[b'{"listing_id":"\\ud83d\\udc5c"}'] == "\U0001F45C"


# --- the price-free fingerprint (PriceFreeFingerprint) ------------------------------------------

_WS = "[ \t\n\r]*"
_AMOUNT = f'"amount"{_WS}:{_WS}(0|[1-9][0-9]{{0,11}})(\\.[0-9]{{1,8}})?'
_CURRENCY = f'"currency"{_WS}:{_WS}"[A-Z]{{3}}"'
PLAIN_MONEY_RE = re.compile(f"\\{{{_WS}({_AMOUNT}{_WS},{_WS}{_CURRENCY}|{_CURRENCY}{_WS},{_WS}{_AMOUNT}){_WS}\\}}")
LIMIT = 4096


def _last_top_member(text: str, name: str) -> tuple[int, int] | None:
    """The span of the last top-level member `name`'s value (keys decoded), as Python's json
    module reads the object; None when it is not an object or has no such member."""
    dec = json.JSONDecoder()
    ws = re.compile(_WS)
    try:
        i = ws.match(text, 0).end()
        if text[i:i + 1] != "{":
            return None
        i = ws.match(text, i + 1).end()
        span = None
        if text[i:i + 1] == "}":
            return None
        while True:
            key, i = dec.raw_decode(text, i)
            i = ws.match(text, i).end()
            if text[i:i + 1] != ":":
                return None
            start = ws.match(text, i + 1).end()
            _, end = dec.raw_decode(text, start)
            if key == name:
                span = (start, end)
            i = ws.match(text, end).end()
            if text[i:i + 1] == "}":
                return span
            if text[i:i + 1] != ",":
                return None
            i = ws.match(text, i + 1).end()
    except (ValueError, RecursionError):
        return None


def price_free_specified(raw: bytes, limit: int = LIMIT) -> str | None:
    """The price-free fingerprint as PriceFreeFingerprint's documentation specifies it."""
    if len(raw) > limit or not _valid_utf8(raw):
        return None
    text = raw.decode("utf-8")
    span = _last_top_member(text, "price") if "\ufffd" not in text else None
    if span is None or not PLAIN_MONEY_RE.fullmatch(text, *span):
        return None
    head = _RE.sub('"event_time":0', text[:span[0]]).encode()
    tail = _RE.sub('"event_time":0', text[span[1]:]).encode()
    return hashlib.sha256(head + tail + b":" + str(len(head)).encode()).hexdigest() + "/p"


def _priced(price: str, t: int = 1, title: str = "Leather bag", tail: str = "") -> bytes:
    return ('{"listing_id":"x1","title":"%s","event_time":%d,"price":%s%s}' % (title, t, price, tail)).encode()


PLAIN_PRICES = ['{"amount":10.0,"currency":"USD"}', '{"amount":9.5,"currency":"USD"}',
                '{"currency":"EUR","amount":0}', '{ "amount" : 123456789012.12345678 ,\n"currency":"JPY" }',
                '{"amount":7,"currency":"USD"}']
OTHER_PRICES = ['{"amount":-1,"currency":"USD"}', '{"amount":1e3,"currency":"USD"}', '{"amount":"10","currency":"USD"}',
                '{"amount":01,"currency":"USD"}', '{"amount":1234567890123,"currency":"USD"}',
                '{"amount":1.123456789,"currency":"USD"}', '{"amount":10,"currency":"usd"}',
                '{"amount":10,"currency":"US"}', '{"amount":10,"currency":"\\u0055SD"}', '{"amount":10}',
                '{"amount":10,"currency":"USD","note":"x"}', '{"amount":10,"amount":11,"currency":"USD"}',
                '{"\\u0061mount":10,"currency":"USD"}', '{"amount":null,"currency":"USD"}', '10', '"10 USD"',
                'null', '[10,"USD"]', '{"amount":10.,"currency":"USD"}', '{"amount":.5,"currency":"USD"}']


def test_the_price_free_fingerprint_is_the_specified_one(tmp_path):
    """zs_price_free_fingerprint gives what its documentation specifies (a Python reading of it)
    on handmade records and on the bench's generated listings with their prices changed; records
    that differ only in a plain price (and event_time integers) share one, anything else tells
    them apart, and a price the plain form does not cover (the contract's refusals among them)
    gives none, so such a re-post is compared whole and reaches its dead letter."""
    from benchmarks.traffic import Traffic, brand_records
    rng = random.Random(20261207)
    generated = list(Traffic(brand_records(200)).lines(300))
    repriced = []
    for raw in generated:
        rec = orjson.loads(raw)
        if "price" in rec:
            rec["price"] = {"amount": round(rng.uniform(0, 1000), 2), "currency": "USD"}
            rec["event_time"] += rng.randrange(1, 10**9)
        repriced.append(orjson.dumps(rec))
    handmade = ([_priced(p) for p in PLAIN_PRICES] + [_priced(p, t=99) for p in PLAIN_PRICES]
                + [_priced(p) for p in OTHER_PRICES]
                + [_priced(PLAIN_PRICES[0], title="Leather bags"), _priced(PLAIN_PRICES[1], title="Leather bags"),
                   # duplicate keys: the last price is the one a parser keeps, the first is content
                   _priced(PLAIN_PRICES[0], tail=',"price":' + PLAIN_PRICES[1]),
                   _priced(PLAIN_PRICES[0], tail=',"price":' + PLAIN_PRICES[2]),
                   _priced(PLAIN_PRICES[3], tail=',"price":' + PLAIN_PRICES[2]),
                   _priced(PLAIN_PRICES[0], tail=',"price":"free"'),
                   b'{"listing_id":"x1","pr\\u0069ce":{"amount":1,"currency":"USD"},"event_time":1}',
                   b'{"listing_id":"x1","pr\\u0069ce":{"amount":2,"currency":"USD"},"event_time":1}',
                   b'{"listing_id":"x1","a":{"price":{"amount":1,"currency":"USD"}},"event_time":1}',
                   b'{"listing_id":"x1","event_time":1}', b'{"listing_id":"x1","price":{"amount":1,"currency":"USD"}',
                   b'{"price":{"amount":1,"currency":"USD"},"title":"\xff"}',
                   b'{"price":{"amount":1,"currency":"USD"},"title":"\xef\xbf\xbd"}',
                   _priced(PLAIN_PRICES[0], tail=',"d":"' + "x" * LIMIT + '"'),
                   # the same text with the price elsewhere is another record
                   b'{"price":{"amount":1,"currency":"USD"},"listing_id":"x1","title":"Leather bag","event_time":1}'])
    records = handmade + generated + repriced
    got = over_texts(tmp_path, records, f"zs_price_free_fingerprint(`text`, {LIMIT})")
    assert sorted(got) == list(range(len(records)))
    by_raw = {raw: got[i][0] for i, raw in enumerate(records)}
    for raw, java in by_raw.items():
        assert java == price_free_specified(raw), raw
    same = {by_raw[_priced(p, t=t)] for p in PLAIN_PRICES for t in (1, 99)}
    assert len(same) == 1 and None not in same
    assert all(by_raw[_priced(p)] is None for p in OTHER_PRICES)
    assert by_raw[_priced(PLAIN_PRICES[0], title="Leather bags")] == by_raw[_priced(PLAIN_PRICES[1], title="Leather bags")]
    assert by_raw[_priced(PLAIN_PRICES[0], title="Leather bags")] not in same
    dup = [by_raw[_priced(PLAIN_PRICES[a], tail=',"price":' + PLAIN_PRICES[b])] for a, b in ((0, 1), (0, 2), (3, 2))]
    assert dup[0] == dup[1] != dup[2] and dup[0] is not None
    assert by_raw[_priced(PLAIN_PRICES[0], tail=',"price":"free"')] is None
    # keys are read decoded, as the scan's parser reads them
    escaped = [by_raw[r] for r in records if b"pr\\u0069ce" in r]
    assert escaped[0] == escaped[1] is not None
    for a, b in zip(generated, repriced):
        if b'"price"' in a:
            assert by_raw[a] == by_raw[b] is not None, a
    by_listing: dict[str, set] = {}
    for raw in generated:
        by_listing.setdefault(orjson.loads(raw)["listing_id"], set()).add(by_raw[raw])
    seen = [fp for fps in by_listing.values() for fp in fps if fp is not None]
    assert len(seen) == len(set(seen)) and len(by_listing) > 10   # no two listings share one


# Records built to tell a byte search for `"op"` and `\u` from POSITION's: the patterns at the
# first and last bytes, cut short at the end, next to multi-byte and invalid UTF-8, escaped.
MAY_HOLD_OP: list[bytes] = [
    b'', b'"', b'"o', b'"op', b'"op"', b'x"op"', b'"op"x', b'\\', b'\\u', b'x\\u', b'\\ux', b'\\\\u', b'u\\',
    b'{"listing_id":"x1","op":"delete"}', b'{"listing_id":"x1","o":"p"}', b'{"listing_id":"x1","top":1}',
    b'{"listing_id":"x1","ops":1}', b'{"listing_id":"x1","t":"\\"op\\""}', b'{"listing_id":"x1","\\u006fp":"delete"}',
    b'{"listing_id":"x1","o\\u0070":"delete"}', b'{"listing_id":"x1","t":"\\n\\t"}', b'{"listing_id":"x1","t":"\\U0041"}',
    b'{"listing_id":"x1","OP":"delete"}', b'{"listing_id":"x1", "op" :"delete"}', b"{'op':'delete'}",
    '{"t":"caf\u00e9\u65e5\U0001F45C","op":1}'.encode(), '{"t":"\u00e9\\u00e9"}'.encode(), '"\u00e9op"'.encode(),
    b'{"t":"\xff"op"}', b'{"t":"\xff\\u"}', b'{"t":"\xe6\x97"op"', b'{"t":"x"}\xf0\x9f\x91\\u', b'\x80"op"\x80',
    b'{"t":"\xf0","op":"delete"}', b'{"t":"\xf0","x":1,"op":"delete"}', b'{"t":"\xe0\\u0041"}', b'\xc1"op"',
    b'\xc2"op"', b'\xf8"op"', b'\xf7"op""op"',
]


def over_raw_texts(tmp_path, records: list[bytes], columns: str) -> dict[bytes, tuple]:
    """`columns` (SQL over `text`) for each record, by its bytes; the records are read as the
    job reads them, bytes kept as they came (the raw format's string: invalid UTF-8 is not
    replaced, as a cast from bytes replaces it), one per line of a file."""
    assert not any(b"\n" in r or b"\r" in r for r in records)
    settings = dataclasses.replace(Settings.from_env(), state_dir=tmp_path / "state")
    t_env = make_table_env(settings, 1, kafka=False, overrides={"execution.checkpointing.interval": None})
    register_java_functions(t_env)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "records").write_bytes(b"\n".join(records) + b"\n")
    t_env.execute_sql("CREATE TEMPORARY TABLE raw_texts (`text` STRING) WITH ('connector' = 'filesystem', "
                      f"'path' = {_sql_str((tmp_path / 'in').resolve().as_uri())}, 'format' = 'raw')")
    with t_env.sql_query(f"SELECT CAST(`text` AS BYTES), {columns} FROM raw_texts").execute().collect() as res:
        return {bytes(r[0]): tuple(r[1:]) for r in res}


def test_may_hold_op_is_the_two_positions_it_replaced(tmp_path):
    """zs_may_hold_op gives what POSITION('"op"') > 0 OR POSITION('\\u') > 0 gave, on the record's
    bytes as the job reads them (invalid UTF-8 included, where Flink's search skips what a stray
    lead byte claims), on handmade records, the bench's generated listings and 2,000 records a
    few edits from them, and NULL for NULL."""
    from benchmarks.traffic import Traffic, brand_records
    rng = random.Random(20261207)
    generated = list(Traffic(brand_records(200)).lines(300))
    records = MAY_HOLD_OP + generated + _mutations(rng, generated + [r for r in MAY_HOLD_OP if len(r) > 3], 2000)
    records = [r for r in records if r]                  # an empty line is no record
    columns = "zs_may_hold_op(`text`), POSITION('\"op\"' IN `text`) > 0 OR POSITION('\\u' IN `text`) > 0"
    got = over_raw_texts(tmp_path, records, columns)
    assert set(got) == set(records)
    for raw, (ours, positions) in got.items():
        assert ours is positions, raw
        if _valid_utf8(raw):
            assert ours is (b'"op"' in raw or b"\\u" in raw), raw
    # where a lead byte of invalid UTF-8 hides a pattern from the search, it stays hidden
    assert got[b'{"t":"\xf0","op":"delete"}'] == (False, False)
    assert got[b'{"t":"\xf0","x":1,"op":"delete"}'] == (True, True)
    assert sum(v[0] for v in got.values()) > 40 and sum(not v[0] for v in got.values()) > 300
    assert over_texts(tmp_path, [b"x"], "zs_may_hold_op(CAST(NULL AS STRING))") == {0: (None,)}
