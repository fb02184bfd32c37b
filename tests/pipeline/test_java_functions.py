"""The job's Java functions (pipelines/java) on the local mini-cluster: the content fingerprint
gives what the SQL it replaced gave (so state taken by one is read by the other) and what its
specification says (a Python reading of it), on records built to tell them apart; the byte
length is the record's size in UTF-8 bytes."""
from __future__ import annotations

import dataclasses
import hashlib
import re

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


def test_the_fingerprint_is_the_replaced_sqls_and_the_specified_one(tmp_path):
    settings = dataclasses.replace(Settings.from_env(), state_dir=tmp_path / "state")
    t_env = make_table_env(settings, 1, kafka=False, overrides={"execution.checkpointing.interval": None})
    register_java_functions(t_env)
    src = t_env.from_elements([(bytearray(r), i) for i, r in enumerate(RECORDS)], DataTypes.ROW([
        DataTypes.FIELD("value", DataTypes.BYTES()), DataTypes.FIELD("i", DataTypes.BIGINT())]))
    t_env.create_temporary_view("src", src)
    t_env.execute_sql("CREATE TEMPORARY VIEW texts AS SELECT i, CAST(`value` AS STRING) AS `text` FROM src")
    q = f"SELECT i, zs_content_fingerprint(`text`), {REPLACED_SQL}, zs_byte_length(`text`) FROM texts"
    with t_env.sql_query(q).execute().collect() as res:
        got = {r[0]: (r[1], r[2], r[3]) for r in res}
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
