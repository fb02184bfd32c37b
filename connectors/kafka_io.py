"""Plain Kafka producers and consumers for the command line, the demo and the tests (the job
itself reads and writes through Flink's connector)."""
from __future__ import annotations

import time
import uuid
from typing import Iterable, Iterator

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition

from connectors.kafka_client import RDKAFKA_LOG, KafkaTarget, consumer, producer

__all__ = ["RDKAFKA_LOG", "BrokerUnreachableError", "CatchUp", "TopicMissingError", "check_topic", "consume",
           "end_offsets", "key_of", "produce_lines", "produce_waiting", "read_topic", "reader_config",
           "topic_partitions"]


def key_of(raw: bytes, field: str) -> bytes | None:
    """The record's key field, when the record is JSON with that string field (else no key)."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    v = obj.get(field) if isinstance(obj, dict) else None
    return v.encode() if isinstance(v, str) else None


def produce_waiting(p: Producer, topic: str, value: bytes, key: bytes | None, **kw) -> None:
    """Produce one message, serving delivery reports while the local queue is full."""
    while True:
        try:
            p.produce(topic, value=value, key=key, **kw)
            return
        except BufferError:
            p.poll(0.1)


def produce_lines(kafka: KafkaTarget, topic: str, lines: Iterable[bytes], key_field: str | None) -> int:
    """Send each non-empty line as one message, keyed by `key_field` when present."""
    p = producer(kafka, {"enable.idempotence": True, "linger.ms": 5, "message.max.bytes": 2 << 20})
    n = 0
    errors: list[str] = []

    def on_delivery(err, _msg):
        if err is not None:
            errors.append(str(err))

    for line in lines:
        line = line.rstrip(b"\r\n")
        if not line.strip():
            continue
        produce_waiting(p, topic, line, key_of(line, key_field) if key_field else None, on_delivery=on_delivery)
        n += 1
        p.poll(0)
    p.flush(30)
    if errors:
        raise RuntimeError(f"{len(errors)} messages to {topic} failed, first: {errors[0]}")
    return n


# How long to wait for a topic's partitions and end offsets (a just-created topic may still be
# electing its leader; a broker that is down answers nothing).
METADATA_TIMEOUT_S = 30.0
_RETRIABLE_METADATA = (KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                       KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._TRANSPORT, KafkaError._TIMED_OUT)


class TopicMissingError(RuntimeError):
    """The topic does not exist (or the broker did not answer for it)."""


class BrokerUnreachableError(RuntimeError):
    """No broker answered at the bootstrap address."""


_BROKER_DOWN = (KafkaError._TRANSPORT, KafkaError._TIMED_OUT, KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE,
                KafkaError._AUTHENTICATION, KafkaError._SSL)


def check_topic(consumer: Consumer, topic: str, bootstrap: str, timeout_s: float = METADATA_TIMEOUT_S) -> list[int]:
    """The topic's partitions, or a clear error: `BrokerUnreachableError` when no broker answers
    (or the client cannot connect: TLS, authentication), `TopicMissingError` when the broker
    answers and the topic does not exist or this principal may not see it."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            md = consumer.list_topics(timeout=max(0.5, min(10.0, deadline - time.monotonic())))
        except KafkaException as e:
            err = e.args[0]
            if err.code() not in _BROKER_DOWN and not err.retriable():
                raise
            if time.monotonic() >= deadline:
                raise BrokerUnreachableError(f"no Kafka broker answered at {bootstrap} within {timeout_s:g}s "
                                             f"({err.str()})") from None
            time.sleep(0.2)
            continue
        if md.brokers:
            break
        if time.monotonic() >= deadline:
            raise BrokerUnreachableError(f"no Kafka broker answered at {bootstrap} within {timeout_s:g}s")
    if topic not in md.topics:
        raise TopicMissingError(f"topic {topic!r} is not available: it does not exist on {bootstrap} "
                                "(or this principal may not describe it)")
    return topic_partitions(consumer, topic, max(1.0, deadline - time.monotonic()))


def topic_partitions(consumer: Consumer, topic: str, timeout_s: float = METADATA_TIMEOUT_S) -> list[int]:
    """The topic's partition ids; a clear error when it does not exist or the broker is unreachable."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            md = consumer.list_topics(topic, timeout=min(10.0, timeout_s)).topics.get(topic)
        except KafkaException as e:
            md, err = None, e.args[0]
        else:
            err = md.error if md is not None else None
        if md is not None and md.partitions and err is None:
            return sorted(md.partitions)
        if time.monotonic() > deadline:
            why = f"broker answered: {err}" if err is not None else "no partitions"
            raise TopicMissingError(f"topic {topic!r} is not available ({why})")
        time.sleep(0.2)


def end_offsets(consumer: Consumer, topic: str, partitions: Iterable[int],
                timeout_s: float = METADATA_TIMEOUT_S) -> dict[int, int]:
    """Where each partition ends now, as this consumer sees it. librdkafka asks with the
    consumer's isolation level, so for a read_committed consumer this is the last stable offset
    (nothing past an open transaction), for read_uncommitted the high watermark."""
    out = {}
    for p in partitions:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                out[p] = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                break
            except KafkaException as e:
                if time.monotonic() > deadline or not (e.args[0].retriable() or e.args[0].code() in _RETRIABLE_METADATA):
                    raise
                time.sleep(0.2)
    return out


class CatchUp:
    """Has a consumer read a topic up to where it ended when reading started?

    On a topic written by transactional producers a read_committed consumer never receives the
    commit/abort markers or the records of aborted transactions, so "last delivered offset + 1
    reaches the end" may never hold. Progress is therefore taken from the consumer itself: a
    partition-EOF event (the consumer must run with `enable.partition.eof`), or its position
    (the next offset it will fetch, which moves past markers and aborted records)."""

    # Positions are asked for at most this often (a local call, but not free per record).
    POSITION_CHECK_S = 0.2

    def __init__(self, consumer: Consumer, topic: str, targets: dict[int, int]):
        self.topic, self.targets = topic, dict(targets)
        self._consumer = consumer
        self.positions = {p: 0 for p in targets}
        self._done = {p for p, t in targets.items() if t <= 0}
        self._checked = 0.0

    @property
    def done(self) -> bool:
        return len(self._done) == len(self.targets)

    def on_message(self, partition: int, offset: int) -> None:
        self.positions[partition] = offset + 1
        if offset + 1 >= self.targets.get(partition, 0):
            self._done.add(partition)

    def on_eof(self, partition: int, offset: int) -> None:
        """An EOF event: the consumer has nothing more to read in this partition now."""
        if partition in self.targets:
            self.positions[partition] = max(self.positions[partition], offset)
            self._done.add(partition)

    def check(self) -> bool:
        """Asks the consumer for its positions (rate-limited) and says whether all are done."""
        if self.done:
            return True
        now = time.monotonic()
        if now - self._checked >= self.POSITION_CHECK_S:
            self._checked = now
            todo = [TopicPartition(self.topic, p) for p in self.targets if p not in self._done]
            for tp in self._consumer.position(todo):
                if tp.offset >= 0:
                    self.positions[tp.partition] = max(self.positions[tp.partition], tp.offset)
                    if tp.offset >= self.targets[tp.partition]:
                        self._done.add(tp.partition)
        return self.done

    def lagging(self) -> str:
        """The partitions not caught up yet, as 'partition P at OFFSET of END' (for errors/logs)."""
        return ", ".join(f"partition {p} at {self.positions[p]} of {t}"
                         for p, t in sorted(self.targets.items()) if p not in self._done) or "none"


def reader_config(*, group_prefix: str, read_committed: bool = True) -> dict:
    """A consumer that reads from explicit assignments, commits nothing and reports EOF."""
    return {"group.id": f"{group_prefix}-{uuid.uuid4()}", "enable.auto.commit": False, "enable.partition.eof": True,
            "isolation.level": "read_committed" if read_committed else "read_uncommitted"}


def consume(kafka: KafkaTarget, topic: str, *, idle_timeout_s: float = 5.0, max_messages: int | None = None,
            read_committed: bool = True, stop_at_end: bool = False,
            metadata_timeout_s: float = METADATA_TIMEOUT_S) -> Iterator[tuple[bytes | None, bytes | None, int, int]]:
    """Read a topic from the beginning: yields (key, value, partition, offset) until nothing new
    arrived for `idle_timeout_s` (or `max_messages` were read). With `stop_at_end`, it returns
    as soon as it has read everything the topic held when reading started (committed records
    only when `read_committed`), without waiting out the idle time."""
    c = consumer(kafka, reader_config(group_prefix="zeroscan-reader", read_committed=read_committed))
    try:
        parts = topic_partitions(c, topic, metadata_timeout_s)
        catch_up = CatchUp(c, topic, end_offsets(c, topic, parts)) if stop_at_end else None
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        n, last = 0, time.monotonic()
        while time.monotonic() - last < idle_timeout_s:
            if catch_up is not None and catch_up.check():
                return
            msg = c.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    if catch_up is not None:
                        catch_up.on_eof(msg.partition(), msg.offset())
                    continue
                raise RuntimeError(f"consuming {topic}: {msg.error()}")
            last = time.monotonic()
            if catch_up is not None:
                catch_up.on_message(msg.partition(), msg.offset())
            yield msg.key(), msg.value(), msg.partition(), msg.offset()
            n += 1
            if max_messages is not None and n >= max_messages:
                return
    finally:
        c.close()


def read_topic(kafka: KafkaTarget, topic: str, *, group: str | None = None, follow: bool = False,
               max_messages: int | None = None, timeout_s: float | None = None, idle_timeout_s: float | None = None,
               metadata_timeout_s: float = METADATA_TIMEOUT_S, read_committed: bool = True,
               ) -> Iterator[tuple[bytes | None, bytes | None, int, int]]:
    """The records of a topic as (key, value, partition, offset), committed ones only when
    `read_committed`, for `zeroscan consume`.

    Without `group`: every partition from the beginning, nothing committed. With `group`: as a
    member of that consumer group (subscribed, so instances share the partitions), from the
    group's committed offsets (the beginning for a new group), committing what was yielded.
    Stops at the end of what the topic held (every partition assigned and at its end), unless
    `follow`: then it keeps reading new records. Also stops after `max_messages`, after
    `timeout_s` in all, or after `idle_timeout_s` without a record. Raises
    `BrokerUnreachableError` or `TopicMissingError` before reading."""
    from connectors.kafka_client import kafka_config

    conf = reader_config(group_prefix="zeroscan-reader", read_committed=read_committed)
    if group is not None:
        conf.update({"group.id": group, "auto.offset.reset": "earliest", "enable.auto.offset.store": False})
    c = consumer(kafka, conf)
    started = time.monotonic()
    pending: dict[int, int] = {}        # partition -> next offset to commit (group mode)

    def commit() -> None:
        if pending:
            c.commit(offsets=[TopicPartition(topic, p, o) for p, o in pending.items()], asynchronous=False)
            pending.clear()

    try:
        parts = check_topic(c, topic, kafka_config(kafka).bootstrap, metadata_timeout_s)
        at_end: set[int] = set()
        assigned: set[int] = set()
        if group is None:
            catch_up = None if follow else CatchUp(c, topic, end_offsets(c, topic, parts))
            c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
            assigned = set(parts)
        else:
            catch_up = None

            def on_assign(_c, tps):
                assigned.update(tp.partition for tp in tps)

            def on_revoke(_c, tps):
                commit()
                for tp in tps:
                    assigned.discard(tp.partition)
                    at_end.discard(tp.partition)

            c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
        n, last, last_commit = 0, time.monotonic(), time.monotonic()
        while True:
            now = time.monotonic()
            if timeout_s is not None and now - started >= timeout_s:
                return
            if idle_timeout_s is not None and now - last >= idle_timeout_s:
                return
            if not follow:
                if catch_up is not None and catch_up.check():
                    return
                if group is not None and assigned and assigned <= at_end:
                    return
            if group is not None and now - last_commit >= 1.0:
                commit()
                last_commit = now
            msg = c.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition())
                    if catch_up is not None:
                        catch_up.on_eof(msg.partition(), msg.offset())
                    continue
                raise RuntimeError(f"consuming {topic}: {msg.error()}")
            last = time.monotonic()
            at_end.discard(msg.partition())
            if catch_up is not None:
                catch_up.on_message(msg.partition(), msg.offset())
            yield msg.key(), msg.value(), msg.partition(), msg.offset()
            if group is not None:
                pending[msg.partition()] = msg.offset() + 1
            n += 1
            if max_messages is not None and n >= max_messages:
                return
    finally:
        try:
            if group is not None:
                commit()
        finally:
            c.close()
