"""What a downstream consumer of decisions relies on, on the real broker (no job: records are
written here the way the job writes them, in transactions): the topics' retention and
compaction, `zeroscan consume --keys --follow --group` and its errors, and the README's
confluent-kafka snippet, run as it is printed there."""
from __future__ import annotations

import json
import re
import threading
import time
import uuid

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import ConfigResource, ResourceType

from connectors.kafka_admin import contract_topics, ensure_topics
from connectors.kafka_broker import free_port_pair
from connectors.kafka_client import admin
from tests.conftest import ROOT

pytestmark = pytest.mark.integration


def txn_producer(bootstrap: str) -> Producer:
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"test-{uuid.uuid4().hex[:8]}"})
    p.init_transactions(30)
    return p


def write_txn(p: Producer, topic: str, records: list[tuple[str, dict]], commit: bool = True) -> None:
    p.begin_transaction()
    for key, value in records:
        p.produce(topic, key=key.encode(), value=json.dumps(value).encode())
    p.flush(30)
    (p.commit_transaction if commit else p.abort_transaction)(30)


def decision(lid: str, brand: str, action: str) -> dict:
    return {"listing_id": lid, "seller_id": "s-1", "brand_id": brand, "action": action,
            "score": 0.0 if action == "clear" else 0.95, "signals": [], "decided_at": 1}


def configs(bootstrap: str, topic: str) -> dict[str, str]:
    client = admin(bootstrap)  # kept alive until the answer is in
    deadline = time.monotonic() + 15
    while True:  # a topic created a moment ago may not be known to the broker's metadata yet
        (fut,) = client.describe_configs([ConfigResource(ResourceType.TOPIC, topic)]).values()
        try:
            return {k: v.value for k, v in fut.result(timeout=30).items()}
        except KafkaException as e:
            if e.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_decisions_are_kept_forever_and_listing_status_is_compacted(kafka_settings):
    s = kafka_settings
    assert configs(s.bootstrap, s.topics.decisions)["retention.ms"] == "-1"
    assert configs(s.bootstrap, s.topics.status)["cleanup.policy"] == "compact"
    # a decisions topic created before (default retention) is switched when topics are ensured
    old = f"{s.topics.decisions}-old"
    ensure_topics(s.bootstrap, {old: {"partitions": 1}})
    assert configs(s.bootstrap, old)["retention.ms"] != "-1"
    spec = contract_topics(s.topics)[s.topics.decisions]
    ensure_topics(s.bootstrap, {old: spec})
    assert configs(s.bootstrap, old)["retention.ms"] == "-1"


def _consume(capsys, *args: str) -> tuple[int, list[str], str]:
    from zeroscan.cli import main

    rc = main(["consume", *args])
    out = capsys.readouterr()
    return rc, out.out.splitlines(), out.err


def test_consume_keys_group_follow_and_errors(kafka_settings, capsys, monkeypatch):
    s = kafka_settings
    monkeypatch.setenv("ZEROSCAN_BOOTSTRAP", s.bootstrap)
    topic = s.topics.decisions
    p = txn_producer(s.bootstrap)
    write_txn(p, topic, [(f"l{i}", decision(f"l{i}", "veltrix", "takedown")) for i in range(3)])
    write_txn(p, topic, [("ghost", decision("ghost", "veltrix", "takedown"))], commit=False)

    rc, lines, _ = _consume(capsys, topic, "--keys")
    assert rc == 0
    assert sorted(line.split("\t")[0] for line in lines) == ["l0", "l1", "l2"]
    assert all(json.loads(line.split("\t", 1)[1])["brand_id"] == "veltrix" for line in lines)

    group = f"zeroscan-reader-{uuid.uuid4().hex[:6]}"
    rc, first, _ = _consume(capsys, topic, "--group", group, "--max-records", "2")
    assert rc == 0 and len(first) == 2
    rc, rest, _ = _consume(capsys, topic, "--group", group)        # goes on from the committed offsets
    assert rc == 0 and len(rest) == 1
    assert sorted(first + rest) == sorted(_consume(capsys, topic)[1])

    # --follow: records written after it started are printed; it stops at --timeout
    later = threading.Timer(2.0, write_txn, (p, topic, [("l9", decision("l9", "lumora", "review"))]))
    later.start()
    started = time.monotonic()
    rc, followed, _ = _consume(capsys, topic, "--follow", "--keys", "--group", group, "--timeout", "8")
    later.join()
    assert rc == 0 and [line.split("\t")[0] for line in followed] == ["l9"]
    assert 8 <= time.monotonic() - started < 20
    rc, followed, _ = _consume(capsys, topic, "--follow", "--max-records", "1")   # from the beginning
    assert rc == 0 and len(followed) == 1

    rc, lines, err = _consume(capsys, f"no-such-topic-{uuid.uuid4().hex[:6]}")
    assert rc == 2 and lines == [] and "is not available: it does not exist" in err
    monkeypatch.setenv("ZEROSCAN_BOOTSTRAP", f"127.0.0.1:{free_port_pair()}")   # nothing listens there
    rc, lines, err = _consume(capsys, topic, "--follow")
    assert rc == 2 and lines == [] and "no Kafka broker answered at 127.0.0.1:" in err


def readme_snippet() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Consuming decisions"):]
    (code,) = [c for c in re.findall(r"```python\n(.*?)```", section, re.S) if "def follow_decisions" in c][:1]
    return code


def test_the_readme_consumer_snippet_keeps_the_open_flags(kafka_settings):
    s = kafka_settings
    p = txn_producer(s.bootstrap)
    write_txn(p, s.topics.decisions, [("l1", decision("l1", "veltrix", "takedown")),
                                      ("l2", decision("l2", "lumora", "review"))])
    write_txn(p, s.topics.decisions, [("l3", decision("l3", "veltrix", "takedown"))], commit=False)  # aborted
    write_txn(p, s.topics.decisions, [("l1", decision("l1", "veltrix", "clear"))])
    namespace: dict = {}
    exec(compile(readme_snippet(), "README.md#consuming-decisions", "exec"), namespace)
    seen: list[dict] = []
    deadline = time.monotonic() + 60
    flags = namespace["follow_decisions"](s.bootstrap, s.topics.decisions, f"takedown-{uuid.uuid4().hex[:6]}",
                                          on_decision=seen.append,
                                          should_stop=lambda: len(seen) >= 3 or time.monotonic() > deadline)
    assert [(d["listing_id"], d["action"]) for d in seen if d["listing_id"] == "l1"] == [
        ("l1", "takedown"), ("l1", "clear")]
    assert "l3" not in {d["listing_id"] for d in seen}           # never a decision of an aborted transaction
    assert set(flags) == {("l2", "lumora")}
