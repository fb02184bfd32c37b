"""Kafka administration through confluent-kafka: readiness, topics, end and committed offsets,
and the ACLs of each zeroscan principal on a secured cluster."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType,
                                   AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic, ResourcePatternType,
                                   ResourceType)

from connectors.kafka_client import KafkaTarget, admin, consumer, kafka_config
from connectors.kafka_config import Topics

log = logging.getLogger(__name__)

_COORDINATOR_MOVING = frozenset({KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                                 KafkaError.COORDINATOR_NOT_AVAILABLE})


def contract_topics(t: Topics, partitions: int = 4) -> dict[str, dict]:
    """The topics of the data contract plus the dead-letter topic, with their configs."""
    return {
        t.listings: {"partitions": partitions},
        # Compacted: the latest version of every brand is kept forever and replayed by each
        # scanner instance at start; tombstone records are kept a day so replays see them.
        t.brands: {"partitions": 1, "config": {"cleanup.policy": "compact", "delete.retention.ms": "86400000"}},
        t.feedback: {"partitions": partitions},
        # Kept forever: a flag stays open until its `clear`, however old (the history of every
        # decision; listing-status below is the compacted latest state).
        t.decisions: {"partitions": partitions, "config": {"retention.ms": "-1", "retention.bytes": "-1"}},
        # Compacted: the latest decision per listing and brand (key ["listing_id","brand_id"]),
        # a `clear` included, so it converges to one record per pair ever flagged.
        t.status: {"partitions": partitions, "config": {"cleanup.policy": "compact"}},
        t.dead_letter: {"partitions": 1},
        # One partition: a single order of removals and appeals for every replica of the state;
        # kept forever (it is the memory of the feedback loop, thousands of events a day).
        t.ledger: {"partitions": 1, "config": {"retention.ms": "-1"}},
        # Re-check requests of the retro worker, keyed by listing_id like the listings; consumed
        # by the job within minutes, so a day's retention is plenty.
        t.rescan: {"partitions": partitions, "config": {"retention.ms": "86400000"}},
        # The job's verdicts on its own scans, keyed by listing_id: the latest per listing is all
        # it reads (a verdict older than the listing's current run is ignored).
        t.quiet: {"partitions": partitions, "config": {"cleanup.policy": "compact"}},
    }


def wait_for_broker(kafka: KafkaTarget, timeout_s: float = 60.0) -> None:
    client = admin(kafka)
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            md = client.list_topics(timeout=2)
            if md.brokers:
                return
        except KafkaException as e:
            last = e
        time.sleep(0.3)
    raise RuntimeError(f"Kafka at {kafka_config(kafka).bootstrap} did not answer within {timeout_s}s ({last})")


def ensure_topics(kafka: KafkaTarget, topics: dict[str, dict]) -> list[str]:
    """Create the topics that do not exist yet; return the names created. Topics that exist get
    the configs named in their spec where they differ (a `decisions` topic created before it was
    kept forever is switched to unlimited retention); other configs are left as they are."""
    client = admin(kafka)
    existing = set(client.list_topics(timeout=10).topics)
    new = [NewTopic(name, num_partitions=spec.get("partitions", 1), replication_factor=1,
                    config=spec.get("config", {}))
           for name, spec in topics.items() if name not in existing]
    created = []
    for name, fut in (client.create_topics(new) if new else {}).items():
        try:
            fut.result(timeout=30)
            created.append(name)
        except KafkaException as e:
            if "TOPIC_ALREADY_EXISTS" not in str(e):
                raise
    reconcile_configs(client, {n: s.get("config", {}) for n, s in topics.items() if n in existing})
    return created


def reconcile_configs(client, wanted: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """Set the wanted configs of existing topics where they differ; returns what was changed."""
    wanted = {n: c for n, c in wanted.items() if c}
    if not wanted:
        return {}
    changes: dict[str, dict[str, str]] = {}
    for res, fut in client.describe_configs([ConfigResource(ResourceType.TOPIC, n) for n in wanted]).items():
        current = fut.result(timeout=30)
        diff = {k: v for k, v in wanted[res.name].items() if k not in current or current[k].value != v}
        if diff:
            changes[res.name] = diff
    if changes:
        resources = [ConfigResource(ResourceType.TOPIC, n, incremental_configs=[
            ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in diff.items()])
            for n, diff in changes.items()]
        for _res, fut in client.incremental_alter_configs(resources).items():
            fut.result(timeout=30)
        log.info("topic configs changed: %s", changes)
    return changes


def end_offsets(kafka: KafkaTarget, topic: str) -> dict[int, int]:
    c = consumer(kafka, {"group.id": "zeroscan-offsets-probe", "enable.auto.commit": False})
    try:
        md = c.list_topics(topic, timeout=10).topics[topic]
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in md.partitions}
    finally:
        c.close()


def committed_offsets(kafka: KafkaTarget, group: str, topic: str, timeout_s: float = 30.0) -> dict[int, int]:
    """The group's committed offset per partition (0 where none), retrying while the group
    coordinator moves or loads (normal for a few seconds after a broker starts)."""
    c = consumer(kafka, {"group.id": group, "enable.auto.commit": False})
    deadline = time.monotonic() + timeout_s
    try:
        md = c.list_topics(topic, timeout=10).topics[topic]
        while True:
            try:
                tps = c.committed([TopicPartition(topic, p) for p in md.partitions], timeout=10)
                return {tp.partition: max(tp.offset, 0) for tp in tps}
            except KafkaException as e:
                err = e.args[0]
                if not (err.retriable() or err.code() in _COORDINATOR_MOVING) or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        c.close()


# --- principals and their rights (README: "Secured Kafka") ------------------------------------

@dataclass(frozen=True, slots=True)
class Role:
    """What one principal may do: read and write topics (named by their `Topics` field)."""
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    # The scanner job: its consumer group and transactional ids (the exactly-once sinks).
    runs_job: bool = False
    # May look at the scanner group's committed offsets (progress), not change them.
    watches_job: bool = False


ROLES: dict[str, Role] = {
    # The scanner principal runs the job and the retro worker (which reads listing-status and
    # writes the rescans the job reads).
    # Only it reads or writes `quiet`: a verdict there stops scans, so no other principal may.
    "scanner": Role(reads=("listings", "feedback", "brands", "ledger", "rescan", "status", "quiet"),
                    writes=("decisions", "status", "dead_letter", "ledger", "rescan", "quiet"), runs_job=True),
    "api": Role(reads=("decisions", "ledger"), writes=("brands", "feedback", "ledger")),
    "cli": Role(reads=("listings", "brands", "feedback", "decisions", "status", "dead_letter", "ledger"),
                writes=("listings", "brands", "feedback", "ledger"), watches_job=True),
    "reader": Role(reads=("decisions", "status"), writes=()),
}
# The super user that creates topics and ACLs (and the broker's own inter-broker principal).
ADMIN_PRINCIPAL = "admin"
# Throw-away consumer groups of the project's readers (connectors.kafka_io.consume, the topic
# followers): they read by assignment and never commit, but carry a group id.
READER_GROUP_PREFIXES = ("zeroscan-reader-", "zeroscan-follower-")
OFFSETS_PROBE_GROUP = "zeroscan-offsets-probe"
# A single broker applies new ACLs within milliseconds; a busy cluster within seconds.
ACL_PROPAGATION_TIMEOUT_S = 30.0


def role_acls(topics: Topics, consumer_group: str, transactional_id_prefix: str) -> list[AclBinding]:
    """Allow-ACLs for every role; everything else is denied by the authorizer."""
    def allow(user: str, rtype: ResourceType, name: str, op: AclOperation,
              pattern: ResourcePatternType = ResourcePatternType.LITERAL) -> AclBinding:
        return AclBinding(rtype, name, pattern, f"User:{user}", "*", op, AclPermissionType.ALLOW)

    out: list[AclBinding] = []
    for user, role in ROLES.items():
        out += [allow(user, ResourceType.TOPIC, getattr(topics, t), AclOperation.READ) for t in role.reads]
        out += [allow(user, ResourceType.TOPIC, getattr(topics, t), AclOperation.WRITE) for t in role.writes]
        if role.reads:
            out += [allow(user, ResourceType.GROUP, prefix, AclOperation.READ, ResourcePatternType.PREFIXED)
                    for prefix in READER_GROUP_PREFIXES]
            out.append(allow(user, ResourceType.GROUP, OFFSETS_PROBE_GROUP, AclOperation.READ))
        if role.runs_job:
            out.append(allow(user, ResourceType.GROUP, consumer_group, AclOperation.READ))
            out.append(allow(user, ResourceType.TRANSACTIONAL_ID, transactional_id_prefix, AclOperation.WRITE,
                             ResourcePatternType.PREFIXED))
        if role.watches_job:
            out.append(allow(user, ResourceType.GROUP, consumer_group, AclOperation.DESCRIBE))
    return out


def grant_roles(kafka: KafkaTarget, topics: Topics, consumer_group: str, transactional_id_prefix: str) -> int:
    """Create the roles' ACLs (as the admin principal); existing ones are left as they are."""
    bindings = role_acls(topics, consumer_group, transactional_id_prefix)
    client = admin(kafka)  # kept alive until every future is answered
    for binding, fut in client.create_acls(bindings).items():
        try:
            fut.result(timeout=30)
        except KafkaException as e:
            raise RuntimeError(f"creating ACL {binding}: {e}") from None
    # The controller has them; wait until the broker's authorizer does too (it applies the
    # metadata log a moment later), so a client started next is not refused.
    wanted = {_acl_key(b) for b in bindings}
    any_acl = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY,
                               AclPermissionType.ANY)
    deadline = time.monotonic() + ACL_PROPAGATION_TIMEOUT_S
    while not wanted <= {_acl_key(b) for b in client.describe_acls(any_acl).result(timeout=30)}:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the broker did not show the new ACLs within {ACL_PROPAGATION_TIMEOUT_S}s")
        time.sleep(0.2)
    return len(bindings)


def _acl_key(b: AclBinding) -> tuple:
    return (b.restype, b.name, b.resource_pattern_type, b.principal, b.operation, b.permission_type)
