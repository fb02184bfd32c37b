"""Reading topics written by transactional producers to their end, on the real broker.

A read_committed consumer never receives commit/abort markers or the records of aborted
transactions, so a follower that waits for "last offset + 1 == high watermark" waits for ever
(issue: the job could not restart after its first judged removal). These tests write committed,
aborted and still-open transactions and check that followers and `consume` come up, apply only
committed records, and say why when they cannot."""
from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Producer

from connectors.brand_feed import CatchUpError, TopicFollower
from connectors.kafka_admin import ensure_topics
from connectors.kafka_io import consume

pytestmark = pytest.mark.integration


def txn_producer(bootstrap: str) -> Producer:
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"test-{uuid.uuid4()}"})
    p.init_transactions(30)
    return p


def write_txn(p: Producer, topic: str, values: list[bytes], *, commit: bool, partitions: int = 2) -> None:
    p.begin_transaction()
    for i, v in enumerate(values):
        p.produce(topic, value=v, partition=i % partitions)
    p.flush(30)
    if commit:
        p.commit_transaction(30)
    else:
        p.abort_transaction(30)


@pytest.fixture
def txn_topic(kafka_settings):
    topic = f"{kafka_settings.topics.ledger}-txn"
    ensure_topics(kafka_settings.bootstrap, {topic: {"partitions": 2, "config": {}}})
    return topic


def test_follower_and_consume_reach_the_end_past_markers_and_aborted_records(kafka_settings, txn_topic):
    s = kafka_settings
    p = txn_producer(s.bootstrap)
    write_txn(p, txn_topic, [b"c1", b"c2", b"c3"], commit=True)
    write_txn(p, txn_topic, [b"a1", b"a2"], commit=False)       # never delivered to read_committed
    write_txn(p, txn_topic, [b"c4", b"c5"], commit=True)
    write_txn(p, txn_topic, [b"a3", b"a4", b"a5"], commit=False)  # the topic ends with abort markers

    seen: list[bytes] = []
    follower = TopicFollower(s.bootstrap, txn_topic, lambda _k, v: seen.append(v), debounce_s=0.0,
                             catch_up_timeout_s=30)
    try:
        assert sorted(seen) == [b"c1", b"c2", b"c3", b"c4", b"c5"]
        # and it keeps following: a later committed transaction is applied, an aborted one is not
        write_txn(p, txn_topic, [b"a6"], commit=False)
        write_txn(p, txn_topic, [b"c6"], commit=True)
        deadline = time.monotonic() + 20
        while b"c6" not in seen and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sorted(seen) == [b"c1", b"c2", b"c3", b"c4", b"c5", b"c6"]
    finally:
        follower.close()

    started = time.monotonic()
    values = sorted(v for _k, v, _p, _o in consume(s.bootstrap, txn_topic, stop_at_end=True, idle_timeout_s=60))
    assert values == [b"c1", b"c2", b"c3", b"c4", b"c5", b"c6"]
    assert time.monotonic() - started < 30, "consume(stop_at_end) waited out its idle time instead of stopping"


def test_an_open_transaction_does_not_hold_the_catch_up(kafka_settings, txn_topic):
    """A running job always has a transaction open on its sinks: a follower started meanwhile
    catches up to the last stable offset and applies the records once they are committed."""
    s = kafka_settings
    p = txn_producer(s.bootstrap)
    write_txn(p, txn_topic, [b"c1", b"c2"], commit=True)
    p.begin_transaction()
    p.produce(txn_topic, value=b"pending", partition=0)
    p.flush(30)
    seen: list[bytes] = []
    follower = TopicFollower(s.bootstrap, txn_topic, lambda _k, v: seen.append(v), debounce_s=0.0,
                             catch_up_timeout_s=30)
    try:
        assert sorted(seen) == [b"c1", b"c2"]
        p.commit_transaction(30)
        deadline = time.monotonic() + 20
        while b"pending" not in seen and time.monotonic() < deadline:
            time.sleep(0.1)
        assert b"pending" in seen
    finally:
        follower.close()


def test_a_follower_that_cannot_start_says_why(kafka_settings):
    started = time.monotonic()
    with pytest.raises(CatchUpError, match=r"cannot follow topic no-such-topic-\w+: topic .* is not available"):
        TopicFollower(kafka_settings.bootstrap, f"no-such-topic-{uuid.uuid4().hex[:6]}", lambda _k, _v: None,
                      catch_up_timeout_s=3)
    assert time.monotonic() - started < 20


def test_consume_cli_reads_to_the_end_and_reports_a_missing_topic(kafka_settings, capsys):
    from zeroscan.cli import main

    s = kafka_settings
    p = txn_producer(s.bootstrap)
    write_txn(p, s.topics.decisions, [b'{"n": 1}', b'{"n": 2}'], commit=True)
    write_txn(p, s.topics.decisions, [b'{"n": 3}'], commit=False)
    env = {"ZEROSCAN_BOOTSTRAP": s.bootstrap}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        assert main(["consume", s.topics.decisions, "--idle", "60"]) == 0
        assert sorted(capsys.readouterr().out.splitlines()) == ['{"n": 1}', '{"n": 2}']
        assert main(["consume", "no-such-topic-here"]) == 2
        assert "topic 'no-such-topic-here' is not available" in capsys.readouterr().err
