"""The scanner job graph, the same in both modes:

    source(listings) -> scan (vectorised Python: parse, validate, match, decide)
        -> dead letters                                  -> sink(dead-letter)
        -> per listing x brand transition (Java, RocksDB state: a listing scan that states what
           the record before it stated stops first; the brands a listing was ever flagged for,
           then LAG over listing_id, brand_id), once for both decision topics
             brand flagged / its action changed   -> decision (one per listing and brand)
             brand flagged before, not now        -> clear (JSON_OBJECT from typed columns)
                                                 -> sink(decisions)
                                                 -> sink(listing-status): latest per listing+brand

Kafka mode reads `listings`, `feedback` and `rescans` (the retro worker's re-checks of live
listings after a brand change, connectors/retro_worker.py) and writes `decisions`, `listing-status` and `dead-letter` exactly once
(checkpoints + transactional sinks + read_committed). File mode reads JSON Lines files on the
local mini-cluster and collects the results to files. `main()` only wires configuration.
"""
from __future__ import annotations

import dataclasses
import enum
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import yaml
from py4j.protocol import Py4JJavaError
from pyflink.table import EnvironmentSettings, StatementSet, TableEnvironment
from pyflink.table.expressions import col

from brand_signals.contract import MAX_RECORD_BYTES
from brand_signals.records import Action
from brand_signals.scanner import MODEL_VERSION
from connectors.file_input import merge_tagged
from connectors.kafka_client import flink_table_options
from connectors.stop_request import StopRequest
from pipelines import worker_teardown
from pipelines.operators import SCAN_RESULT, scan_udf
from pipelines.scan_config import BrandInput, ImageScan, ScanConfig, image_scan
from pipelines.steps import RESCAN, RowKind
from zeroscan.settings import DEFAULT_UNCHANGED_CACHE_SLOTS, Settings

log = logging.getLogger(__name__)


def load_flink_conf(conf_dir: Path) -> dict[str, str]:
    """Flink's config.yaml as flat `key: value` strings (nested YAML is flattened with dots)."""
    data = yaml.safe_load((conf_dir / "config.yaml").read_text()) or {}
    flat: dict[str, str] = {}

    def walk(prefix: str, node) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(f"{prefix}{k}.", v)
        else:
            flat[prefix[:-1]] = str(node).lower() if isinstance(node, bool) else str(node)

    walk("", data)
    return flat


def state_storage(settings: Settings, *, cluster: bool) -> dict[str, str]:
    """Checkpoint and savepoint locations the job sets itself. Embedded: the configured URIs or
    folders under the state folder. On a cluster the cluster's own configuration owns them
    (flink-conf/config.yaml or -D at start/submit); only locations set explicitly
    (ZEROSCAN_CHECKPOINT_DIR / ZEROSCAN_SAVEPOINT_DIR) are passed on."""
    if not cluster:
        return {"execution.checkpointing.dir": settings.checkpoint_uri,
                "execution.checkpointing.savepoint-dir": settings.savepoint_uri}
    out = {}
    if settings.checkpoint_dir:
        out["execution.checkpointing.dir"] = settings.checkpoint_dir
    if settings.savepoint_dir:
        out["execution.checkpointing.savepoint-dir"] = settings.savepoint_dir
    return out


def embedded_cluster_options(settings: Settings) -> dict[str, str]:
    """What the embedded mini-cluster needs that a real cluster has from its distribution: the
    web UI/REST on a known port range (so `job run` can print it), and the Prometheus reporter.
    The mini-cluster loads no plugins (it finds reporter factories on its classpath only), so
    the JVM that the first TableEnvironment launches gets a lib folder (FLINK_LIB_DIR, which
    PyFlink's launcher honours) of the wheel's lib/ plus the reporter jar from plugins/."""
    from connectors.flink_cluster import assemble_lib, flink_dist, prometheus_reporter_jars
    from connectors.job_ops import EMBEDDED_REST_PORTS

    if "FLINK_LIB_DIR" not in os.environ:
        dist = flink_dist()
        lib = assemble_lib(dist, settings.state_dir / "flink-embedded" / "lib", prometheus_reporter_jars(dist))
        os.environ["FLINK_LIB_DIR"] = str(lib)
        # Without FLINK_HOME, PyFlink's home lookup resets FLINK_LIB_DIR to the wheel's lib/.
        os.environ.setdefault("FLINK_HOME", str(dist))
    return {"rest.bind-port": f"{EMBEDDED_REST_PORTS.start}-{EMBEDDED_REST_PORTS.stop - 1}"}


def gateway_environment(environ=os.environ) -> None:
    """What the launch of PyFlink's gateway JVM reads, made safe to launch from.
    A local job runs its Python workers in this process (PyFlink's loopback mode), and their
    start copies the Java side's worker settings into this process's environment, among them
    PYFLINK_GATEWAY_DISABLED, which stays set: with it, this process (or a job it starts as a
    child, which inherits it) could not launch its own gateway for the next job.
    An empty JAVA_HOME is dropped: Flink's own scripts take it as unset (the `java` on PATH), but
    PyFlink's launcher joins it into `bin/java`, a relative path that fails the launch (job
    tests failed so once, on two pytest workers; the worker settings copied in are one way for
    such a value to arrive)."""
    environ.pop("PYFLINK_GATEWAY_DISABLED", None)
    if environ.get("JAVA_HOME") == "":
        del environ["JAVA_HOME"]


def make_table_env(settings: Settings, parallelism: int, *, kafka: bool,
                   overrides: dict[str, str | None] | None = None, cluster: bool = False) -> TableEnvironment:
    """A streaming TableEnvironment with flink-conf/config.yaml applied; an override of None
    removes a key. `cluster`: submitted to a cluster (`flink run`), which owns checkpoint and
    savepoint storage."""
    gateway_environment()
    os.environ.setdefault("FLINK_LOG_DIR", str(settings.state_dir / "flink-logs"))
    Path(os.environ["FLINK_LOG_DIR"]).mkdir(parents=True, exist_ok=True)
    embedded = {} if cluster else embedded_cluster_options(settings)  # before the JVM is launched
    worker_teardown.install()  # local jobs' workers run here (loopback); see the module
    if dict(settings.flink_opts).get("python.execution-mode") == "thread":
        _embedded_python_path()
    t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    conf = t_env.get_config()
    values = load_flink_conf(settings.flink_conf_dir)
    values.update({
        "parallelism.default": str(parallelism),
        # Workers' Python: this virtualenv on the embedded mini-cluster; on a cluster, the
        # interpreter installed on the TaskManagers.
        "python.executable": settings.worker_python,
        "python.client.executable": sys.executable,
        **state_storage(settings, cluster=cluster),
        # One scan per record. The four sinks of one statement set read the same views; without
        # this the planner optimises each sink's copy of a view apart, the copies end with
        # different projections, subplan reuse no longer sees them as equal, and the job runs
        # the Python scan (and the keyed steps around it) once per distinct copy: twice per
        # record, and the per-brand transition once per output topic (explain: one PythonCalc).
        "table.optimizer.reuse-optimize-block-with-digest-enabled": "true",
    })
    values.update(embedded)
    # The job's Java functions (both modes), the Kafka connector (Kafka mode): loaded by the
    # planner here and shipped with the job to a cluster.
    if not settings.udf_jar.is_file():
        raise RuntimeError(f"the job's Java functions are missing ({settings.udf_jar}): run `make jars`")
    jars = [settings.udf_jar]
    if kafka:
        if not settings.connector_jars:
            raise RuntimeError(f"Flink Kafka connector jar missing in {settings.jar_dir}: run `make jars`")
        jars += settings.connector_jars
    values["pipeline.jars"] = ";".join(j.as_uri() for j in jars)
    # ZEROSCAN_FLINK_OPTS="key=value;key=value" overrides config.yaml (benchmarks, experiments).
    values.update(settings.flink_opts)
    for k, v in (overrides or {}).items():
        if v is None:
            values.pop(k, None)
        else:
            values[k] = v
    for k, v in values.items():
        conf.set(k, v)
    return t_env


def _embedded_python_path() -> None:
    """Thread mode runs the Python functions inside the JVM (PEMJA), whose interpreter starts
    from the base installation: it finds this project and the virtualenv's packages only on
    PYTHONPATH, which the JVM inherits when the first TableEnvironment launches it."""
    import site

    paths = [str(Path(__file__).resolve().parent.parent), *site.getsitepackages()]
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(paths + ([old] if old else []))


def _kafka_table(name: str, topic: str, settings: Settings, columns: str, options: dict[str, str]) -> str:
    opts = {"connector": "kafka", "topic": topic, "properties.bootstrap.servers": settings.bootstrap,
            **flink_table_options(settings.kafka), **options}
    with_ = ",\n  ".join(f"{_sql_str(k)} = {_sql_str(v)}" for k, v in opts.items())
    return f"CREATE TEMPORARY TABLE {name} (\n  {columns}\n) WITH (\n  {with_}\n)"


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def source_options(settings: Settings) -> dict[str, str]:
    """A Kafka source's options: the raw record from the job's group offsets (from the start for
    a new group), only committed transactions."""
    return {"properties.group.id": settings.consumer_group, "scan.startup.mode": "group-offsets",
            "properties.auto.offset.reset": "earliest", "properties.isolation.level": "read_committed",
            "value.format": "raw"}


# Every output: in transactions that commit with the checkpoints.
EXACTLY_ONCE_SINK = {
    "sink.delivery-guarantee": "exactly-once",
    # Must stay below the broker's transaction.max.timeout.ms (15 min by default).
    "properties.transaction.timeout.ms": "900000",
}


def register_kafka_io(t_env: TableEnvironment, settings: Settings) -> None:
    t = settings.topics
    # One source over the keyed inputs: listing updates, feedback events, and the retro worker's
    # re-checks of live listings after a brand change (their own input_kind, so no filter meant
    # for re-posted listings drops them). The record is read as a string (the raw format keeps
    # its bytes as they are, invalid UTF-8 included; the cast back gives the same bytes, taken
    # by define_keyed_input only for records that go on, so `value` is NULL here), so the
    # keying, the fingerprint and the feedback context all read one string value, decoded to
    # Java's form once per record: Flink 2.2 evaluates each `CAST(value AS STRING)` anew, and
    # the steps before the keyed exchange held ten of them.
    # With the price loop, the job's own verdicts too (`quiet`: pipelines/java RepostStop).
    loop = f";{t.quiet}" if _price_loop(settings) else ""
    t_env.execute_sql(_kafka_table(
        "inputs_kafka", f"{t.listings};{t.feedback};{t.rescan}{loop}", settings,
        "`text` STRING, `topic` STRING METADATA VIRTUAL, `partition` INT METADATA VIRTUAL, "
        "`offset` BIGINT METADATA VIRTUAL", source_options(settings)))
    t_env.execute_sql(f"""
        CREATE TEMPORARY VIEW raw_in AS
        SELECT CAST(NULL AS BYTES) AS `value`, `text`, `topic` AS src, `partition` AS part, `offset` AS pos,
               CASE WHEN `topic` = '{t.feedback}' THEN 'feedback' WHEN `topic` = '{t.rescan}' THEN 'rescan'
                    {f"WHEN `topic` = '{t.quiet}' THEN 'quiet' " if loop else ""}ELSE 'listing' END AS input_kind
        FROM inputs_kafka""")
    sink_opts = {"key.format": "raw", "key.fields": "k", "value.format": "raw", "value.fields-include": "EXCEPT_KEY",
                 **EXACTLY_ONCE_SINK}
    for name, topic in (("decisions_kafka", t.decisions), ("status_kafka", t.status),
                        ("dead_letter_kafka", t.dead_letter), ("ledger_kafka", t.ledger), ("quiet_kafka", t.quiet)):
        t_env.execute_sql(_kafka_table(
            name, topic, settings, "`k` STRING, `v` STRING",
            {**sink_opts, "sink.transactional-id-prefix": f"{settings.transactional_id_prefix}-{topic}"}))


def register_file_io(t_env: TableEnvironment, tagged: Path) -> None:
    """File mode reads one tagged file (see connectors.file_input)."""
    t_env.execute_sql(
        "CREATE TEMPORARY TABLE inputs_file (`value` BYTES, "
        "`path` STRING NOT NULL METADATA FROM 'file.path' VIRTUAL) "
        f"WITH ('connector' = 'filesystem', 'path' = '{tagged.resolve().as_uri()}', 'format' = 'raw')")
    t_env.execute_sql("CREATE TEMPORARY VIEW raw_in AS SELECT `value`, CAST(`value` AS STRING) AS `text`, `path` AS src, "
                      "CAST(NULL AS INT) AS part, CAST(NULL AS BIGINT) AS pos, 'tagged' AS input_kind FROM inputs_file")


# A record's text (file mode's records carry a tag before a tab: connectors.file_input), and
# what kind of input it is (file mode: from the tag).
BODY_SQL = ("CASE WHEN input_kind = 'tagged' THEN SUBSTRING(`text` "
            "FROM POSITION(CHR(9) IN `text`) + 1) ELSE `text` END")
IS_LISTING_SQL = "(input_kind = 'listing' OR (input_kind = 'tagged' AND `text` LIKE 'L%'))"
IS_FEEDBACK_SQL = "(input_kind = 'feedback' OR (input_kind = 'tagged' AND `text` LIKE 'F%'))"

# What a listing presented, for judging feedback about it, kept in Flink's keyed state (the
# OVER aggregate's, in the RocksDB state backend: checkpointed, and redistributed by key group
# when the job is rescaled from a savepoint), not by the scan workers: on a feedback event, the
# listing's latest update (not a deletion, at most the contract's record size) before it; the
# scan operator matches that record again to judge the event. NULL on listing updates (LAST_VALUE
# skips NULLs, so feedback and deletions leave the kept record as it is).
# A delete is told as the scanner tells it, by the parsed `op`; the cheap test before the parse
# only skips records that cannot hold the key: one that does holds `"op"` as written, or a JSON
# escape (`"\u006fp"` is the same key to a parser, tests/pipeline/test_unchanged.py). It looks
# for both in one pass over the record's bytes where they are (zs_may_hold_op, pipelines/java
# MayHoldOp). A regular expression for them decoded the record to a Java string and tried the
# alternation at every character; then two POSITIONs, which compare the pattern at every byte
# through a memory-segment call, walked the record twice: 39 % of the JVM's CPU samples in a
# wave of price-only re-posts (benchmarks in the README, "Throughput").
LISTING_CONTEXT_SQL = """CASE WHEN is_feedback
         THEN LAST_VALUE(CASE WHEN is_listing
                                   AND NOT (zs_may_hold_op(body)
                                            AND COALESCE(JSON_VALUE(body, '$.op'), '') = 'delete')
                                   AND zs_byte_length(body) <= 1048576 THEN body END) OVER w END"""


# An unchanged re-post: a listing update byte-identical to the listing's previous record but for
# its event_time. Its scan could state only what the previous one stated, so it stops on the
# Java side, before the crossing into Python. The fingerprint is SHA-256 (a seller cannot make
# two contents collide, as MD5 would let them) of the record with every `"event_time": <integer>`
# rewritten to `"event_time":0`, and the record's length in code points (pipelines/java,
# ContentFingerprint, says which integers exactly):
# two records with one fingerprint differ only in those integers, so one is a valid record
# exactly when the other is, and the scanner reads the same content from both (no parser
# differential: the whole record is hashed, not fields read by another parser); with the same
# canonical text, the same length means the same event_time digits in all, so the same size in
# bytes (a record over the contract's byte limit is refused whatever its text).
# Not fingerprinted, so always scanned: records that are not valid UTF-8 (or hold U+FFFD),
# records without an integer event_time that is valid JSON and valid for the contract (a
# date-time string, -1, 1.5, 0012), feedback, rescans, and a record whose previous one was any
# of those; a delete differs from the upsert before it by its `op`. A re-post identical to a
# record that was dead-lettered for its content stops too: that record's dead letter stands for
# it. The fingerprint also holds the period (of `recheck_s`, each Kafka partition at its own
# phase) it was taken in, so a listing's unchanged content is scanned again at least once per
# period: what the scanner learns (feedback neighbours, a new image from a brand whose sha256
# differs) and image fetches that failed reach it then. A brand change reaches live listings at
# once through the retro worker's rescans.
# The hash and the length are one Java function (zs_content_fingerprint, pipelines/java): one
# pass over the record's bytes where the same SQL (REGEXP, REGEXP_REPLACE, SHA256, CHAR_LENGTH,
# each evaluated anew by Flink 2.2, each regular expression over the record decoded again, and
# REGEXP_REPLACE compiling its pattern on every call) cost most of the source step; it gives
# the same fingerprints (tests/pipeline/test_java_functions.py), so state taken by one is read
# by the other.

# The job's Java functions (pipelines/java; the jar is on `pipeline.jars`, see make_table_env).
JAVA_FUNCTIONS = {"zs_content_fingerprint": "dev.zeroscan.flink.ContentFingerprint",
                  "zs_byte_length": "dev.zeroscan.flink.ByteLength",
                  "zs_changed_here": "dev.zeroscan.flink.ChangedHere",
                  "zs_listing_id": "dev.zeroscan.flink.ListingId",
                  "zs_may_hold_op": "dev.zeroscan.flink.MayHoldOp",
                  "zs_price_free_fingerprint": "dev.zeroscan.flink.PriceFreeFingerprint",
                  "zs_repost_stop": "dev.zeroscan.flink.RepostStop"}


def register_java_functions(t_env: TableEnvironment) -> None:
    for name, cls in JAVA_FUNCTIONS.items():
        t_env.create_java_temporary_system_function(name, cls)


def _period_sql(recheck_s: int, now_s: str) -> str:
    """The re-check period a record is read in, as a string."""
    # The phase: from the Kafka partition (a listing's records share one: the topic is keyed
    # by listing_id), so a period's re-checks are spread over the partitions. Not from the
    # record: Flink 2.2 evaluates every call of an expression anew (no reuse of common
    # sub-expressions: a JSON_VALUE parses the record again, a length walks it again).
    phase = f"MOD(CAST(COALESCE(part, 0) AS BIGINT) * 7919, {recheck_s})"
    return f"CAST(CAST(({now_s} + {phase}) / {recheck_s} AS BIGINT) AS STRING)"


def fingerprint_sql(recheck_s: int, now_s: str = "UNIX_TIMESTAMP()") -> str:
    """The unchanged-content fingerprint of a listing record (NULL: not fingerprinted); `now_s`
    the clock, in epoch seconds (tests give a column)."""
    if recheck_s <= 0:
        return "CAST(NULL AS STRING)"
    return f"""CASE WHEN is_listing THEN CONCAT(zs_content_fingerprint(body), '/', {_period_sql(recheck_s, now_s)}) END"""


def price_free_sql(recheck_s: int, now_s: str = "UNIX_TIMESTAMP()") -> str:
    """A listing record's fingerprint without its price, in its re-check period (NULL: none;
    pipelines/java PriceFreeFingerprint says when)."""
    if recheck_s <= 0:
        return "CAST(NULL AS STRING)"
    return (f"CASE WHEN is_listing THEN CONCAT(zs_price_free_fingerprint(body, {MAX_RECORD_BYTES}), '/', "
            f"{_period_sql(recheck_s, now_s)}) END")


# A verdict of the price loop (topic `quiet`, brand_signals/schemas/project/quiet-listings.schema.json):
# `<verdict>\t<offset>\t<listing_id>`, read with string functions (no JSON parse).
_TAB = "CHR(9)"
QUIET_LID_SQL = f"SUBSTRING(body FROM LOCATE({_TAB}, body, LOCATE({_TAB}, body) + 1) + 1)"
QUIET_VERDICT_SQL = f"SPLIT_INDEX(body, {_TAB}, 0)"
QUIET_POS_SQL = f"TRY_CAST(SPLIT_INDEX(body, {_TAB}, 1) AS BIGINT)"


def define_keyed_input(t_env: TableEnvironment, unchanged_recheck_s: int, now_s: str = "UNIX_TIMESTAMP()",
                       cache_slots: int = DEFAULT_UNCHANGED_CACHE_SLOTS, price_loop: bool = False) -> None:
    """The view `keyed_in` over `raw_in`: every record keyed by listing_id, with the newest
    listing offset and the feedback context; unchanged re-posts stopped (fingerprint_sql), most
    of them before the keyed exchange (`cache_slots` > 0: the view `changed_here`); with
    `price_loop`, also price-only re-posts whose content the job's scans found presents no brand
    (the `quiet` records of `raw_in`, pipelines/java RepostStop)."""
    # Key every record by listing_id on the Java side (one pass over the record's bytes,
    # zs_listing_id in pipelines/java: what JSON_VALUE gives for a string listing_id, without
    # building the record's tree, which cost most of the reading step; the OVER aggregates
    # below, partitioned by listing_id, keep what the job needs per listing: the newest listing
    # offset, the last fingerprint, the latest update), so a listing's updates and the feedback
    # about it always reach the same scan subtask; no aggregate exists only to force the keying.
    # File mode's records carry a tag before a tab (connectors.file_input): the listing_id is
    # read after it.
    # A rescan (a re-check of a live listing after a brand change) carries the offset of the
    # listing record it re-checks: `listing_pos`, the newest listing offset read per listing
    # (unchanged re-posts included), makes one the job has read a newer record of since stale
    # (listings are keyed by listing_id, so one listing's records share a partition).
    # One keyed step for all three (a second one after the filter, for the context alone, cost
    # more in its exchange than it saved: benchmarks in the README, "Throughput").
    # Before that step, where each record is read (no exchange yet), most unchanged re-posts
    # stop already: a cache per source subtask (zs_changed_here, pipelines/java ChangedHere)
    # holds the fingerprint of the last record per slot of listing ids, and a record whose
    # fingerprint its slot holds stops there. It stops only what the keyed step would stop
    # when a listing's records are all read by one subtask, as the contract's keying by
    # listing_id gives for `listings`. Feedback and rescans are other topics, read perhaps by
    # another subtask: an identical re-post after them then stops here, where the keyed step
    # alone would scan it once more (the feedback's and the rescan's own scans have written
    # their brands' state; the period still re-scans it). What the stopped re-posts do not
    # update in the keyed step: the newest listing offset (a rescan of their content is then
    # not stale, and scans that same content) and the kept update for feedback (the same
    # content, an older event_time). The function keeps state, so it is not deterministic: it
    # gives "" for a record that stops, so that it is evaluated once, in the step that reads.
    # The record's bytes for the scan are taken after it, so a record that stops is not copied
    # for them: from the text in Kafka mode (the raw format's string holds the record's bytes
    # as they came, invalid UTF-8 included; `raw_in` gives no `value` there), the file's own
    # bytes in file mode (a cast of its text would not keep invalid UTF-8).
    # With `price_loop`, a listing record also carries its price-free fingerprint, and the
    # verdicts of the job's own scans come back as `quiet` records (the loop through Kafka that a
    # SQL graph has no edge for: a verdict is read a checkpoint after its scan). The keyed step
    # stops a price-only re-post when the listing's latest verdict says its content, price
    # apart, presents no brand (zs_repost_stop, pipelines/java RepostStop, which also stops the
    # unchanged re-posts the cache let through: its fingerprint equals the record's before).
    # A price counts only against the floor of a brand the listing presents, so such a re-post's
    # scan could state nothing new. What that costs and what it keeps: the README, "Price-only
    # re-posts".
    register_java_functions(t_env)
    fp = fingerprint_sql(unchanged_recheck_s, now_s)
    pfp = price_free_sql(unchanged_recheck_s, now_s) if price_loop else "CAST(NULL AS STRING)"
    quiet = "input_kind = 'quiet'"
    cached = (f"zs_changed_here(CASE WHEN {quiet} THEN CAST(NULL AS STRING) ELSE lid END, {fp}, {int(cache_slots)})"
              if cache_slots > 0 and unchanged_recheck_s > 0 else fp)
    t_env.execute_sql(f"""
        CREATE TEMPORARY VIEW changed_here AS
        SELECT COALESCE(`value`, CAST(`text` AS BYTES)) AS `value`, src, part, pos, input_kind, is_listing,
               is_feedback, pt, body,
               lid, content_pos, fp, {pfp} AS pfp,
               CASE WHEN {quiet} THEN {QUIET_VERDICT_SQL} END AS verdict,
               CASE WHEN {quiet} THEN {QUIET_POS_SQL} END AS verdict_pos FROM (
            SELECT *, {cached} AS fp
            FROM (SELECT *, CASE WHEN {quiet} THEN {QUIET_LID_SQL} ELSE zs_listing_id(body) END AS lid,
                         CASE WHEN input_kind = 'rescan'
                              THEN CAST(JSON_VALUE(body, '$.source.offset') AS BIGINT) END AS content_pos
                  FROM (SELECT *, {BODY_SQL} AS body, {IS_LISTING_SQL} AS is_listing,
                               {IS_FEEDBACK_SQL} AS is_feedback, PROCTIME() AS pt FROM raw_in)))
        WHERE fp IS NULL OR fp <> ''""")
    t_env.execute_sql(f"""
        CREATE TEMPORARY VIEW fingerprinted AS
        SELECT `value`, src, part, pos, input_kind, lid, content_pos, pfp,
               MAX(CASE WHEN input_kind = 'listing' THEN pos END) OVER w AS listing_pos,
               zs_repost_stop(CASE WHEN is_listing THEN 'listing' WHEN {quiet} THEN 'quiet' ELSE 'other' END,
                              fp, pfp, pos, verdict, verdict_pos) OVER w AS stop,
               {LISTING_CONTEXT_SQL} AS context_raw
        FROM changed_here
        WINDOW w AS (PARTITION BY lid ORDER BY pt)""")
    t_env.execute_sql(f"""
        CREATE TEMPORARY VIEW keyed_in AS
        SELECT `value`, src, part, pos, input_kind, lid, listing_pos, content_pos, context_raw, pfp
        FROM fingerprinted WHERE NOT stop AND NOT {quiet}""")


def define_scan(t_env: TableEnvironment, config: ScanConfig, unchanged_recheck_s: int = 0,
                unchanged_cache_slots: int = 0, price_loop: bool = False) -> None:
    """Views `decisions_out(k, v)`, `status_out(k, v)`, `dead_out(k, v)` and `ledger_out(k, v)`
    over `raw_in`. `unchanged_recheck_s` > 0: unchanged re-posts stop on the Java side and are
    scanned again once per that period (see fingerprint_sql); 0: every record is scanned. With
    `price_loop` (Kafka mode, `raw_in` holding the `quiet` topic's records), also `quiet_out(k,
    v)`: the verdicts the job reads back (define_keyed_input)."""
    t_env.create_temporary_function("scan", scan_udf(config))
    define_keyed_input(t_env, unchanged_recheck_s, cache_slots=unchanged_cache_slots, price_loop=price_loop)
    cols = ", ".join(f"r.{name} AS {name}" for name in SCAN_RESULT.names)
    # The record's key, offset and price-free fingerprint pass beside the scan on the Java side
    # (forwarded by the Python step, not sent to Python); only `quiet_out` reads them.
    t_env.execute_sql(f"""
        CREATE TEMPORARY VIEW scanned_in AS
        SELECT {cols}, s.lid AS in_lid, s.pos AS in_pos, s.pfp AS in_pfp, s.input_kind AS in_kind
        FROM (SELECT scan(`value`, src, part, pos,
                          CASE WHEN input_kind = 'rescan' AND content_pos < listing_pos THEN 'rescan-stale'
                               ELSE input_kind END, context_raw, lid) AS r, lid, pos, pfp, input_kind
              FROM keyed_in) AS s""")
    t_env.execute_sql(f"CREATE TEMPORARY VIEW scanned AS SELECT {', '.join(SCAN_RESULT.names)} FROM scanned_in")
    if price_loop:
        # A verdict for every scanned listing record with a price-free fingerprint: its content
        # presents no brand (`quiet`), or "-" (it presented one, or was refused), which revokes
        # the listing's earlier verdicts.
        t_env.execute_sql(f"""
            CREATE TEMPORARY VIEW quiet_out AS
            SELECT in_lid AS k, CONCAT(CASE WHEN quiet THEN in_pfp ELSE '-' END, {_TAB}, CAST(in_pos AS STRING),
                                       {_TAB}, in_lid) AS v
            FROM scanned_in WHERE in_kind = 'listing' AND in_pfp IS NOT NULL AND in_lid IS NOT NULL
                                  AND in_pos IS NOT NULL""")
    for sql in transition_views():
        t_env.execute_sql(sql)
    # `decisions` is keyed by listing_id. The compacted `listing-status` topic holds the latest
    # state per listing and brand: key ["listing_id","brand_id"] (a JSON array), value the latest
    # decision for that pair, `clear` included (never a tombstone, so a reader that was away
    # longer than the topic's tombstone retention still sees the clearance).
    t_env.execute_sql("CREATE TEMPORARY VIEW keyed_changes AS SELECT listing_id AS decision_key, "
                      "JSON_ARRAY(listing_id, brand_id) AS status_key, v FROM changes")
    t_env.execute_sql("CREATE TEMPORARY VIEW decisions_out AS SELECT decision_key AS k, v FROM keyed_changes")
    t_env.execute_sql("CREATE TEMPORARY VIEW status_out AS SELECT status_key AS k, v FROM keyed_changes")
    t_env.execute_sql("CREATE TEMPORARY VIEW dead_out AS SELECT COALESCE(listing_id, '') AS k, dead AS v "
                      f"FROM scanned WHERE kind = {_lit(RowKind.DEAD)}")
    t_env.execute_sql("CREATE TEMPORARY VIEW ledger_out AS "
                      "SELECT listing_id AS k, ledger AS v FROM scanned WHERE ledger IS NOT NULL")


def _lit(e: enum.Enum) -> str:
    return _sql_str(e.value)


def transition_views() -> list[str]:
    """The per listing and brand transition over `scanned`, as the view `changes(listing_id,
    brand_id, v)`: a decision when a brand's flag is set or its action (or removal) changes, a
    `clear` when a brand flagged before is not any more. A listing scan names every brand it is
    flagged for after a sweep entry (a null brand); per listing the job keeps the brands it was ever flagged
    for (`ever`), and the sweep puts every one of them not named now to `clear`. A feedback
    record names its own brand only. Per listing and brand, LAG compares with the previous
    state. A listing scan that states what the record before it stated is dropped first
    (`stated`). All steps are Java (RocksDB state in Kafka mode); so is the `clear` record, built
    from typed columns. The literals come from the enums (RowKind, Action, RESCAN)."""
    clear, rows = _lit(Action.CLEAR), ", ".join(_lit(k) for k in (RowKind.DECISION, RowKind.PASS))
    rowcols = ("listing_id, seller_id, event_time, src_topic, src_partition, src_offset, src_file, src_line, "
               "reason, decided_at")
    # A `clear` record (JSON_OBJECT writes its keys in name order); `source` {topic, partition,
    # offset} or {file, line}.
    clear_json = f"""JSON_OBJECT(
            KEY 'listing_id' VALUE listing_id, KEY 'seller_id' VALUE seller_id, KEY 'brand_id' VALUE brand_id,
            KEY 'action' VALUE action, KEY 'score' VALUE CAST(0 AS DOUBLE),
            KEY 'signals' VALUE JSON_ARRAY(JSON_OBJECT(KEY 'kind' VALUE {_sql_str(RESCAN)},
                KEY 'score' VALUE CAST(0 AS DOUBLE), KEY 'detail' VALUE JSON_OBJECT(KEY 'reason' VALUE reason))),
            KEY 'decided_at' VALUE decided_at, KEY 'event_time' VALUE event_time,
            KEY 'source' VALUE JSON_OBJECT(KEY 'topic' VALUE src_topic, KEY 'partition' VALUE src_partition,
                KEY 'offset' VALUE src_offset, KEY 'file' VALUE src_file, KEY 'line' VALUE src_line ABSENT ON NULL)
            ABSENT ON NULL)"""
    # Most listing updates are re-posts whose scan says what the one before said: per listing,
    # a scan whose `state_key` equals the previous record's (the first record's previous is ""
    # flagged for none; after a feedback record it is NULL) cannot change any brand's state, and
    # stops here, before the per-brand steps. Only this step's small per-listing state (the
    # last key) is touched by every update.
    return [f"""
        CREATE TEMPORARY VIEW stated AS
        SELECT *, LAG(state_key, 1, '') OVER (PARTITION BY listing_id ORDER BY pt) AS prev_key
        FROM (SELECT *, PROCTIME() AS pt FROM scanned WHERE kind IN ({rows}))""", f"""
        CREATE TEMPORARY VIEW entries AS
        SELECT {rowcols}, flagged, e.brand_id AS brand_id, actions[e.brand_id] AS action,
               removed[e.brand_id] AS removed, decisions[e.brand_id] AS decision, pt
        FROM stated CROSS JOIN UNNEST(brands) AS e(brand_id)
        WHERE state_key IS NULL OR prev_key IS NULL OR state_key <> prev_key""", """
        CREATE TEMPORARY VIEW flag_history AS
        SELECT *, ARRAY_AGG(DISTINCT brand_id) OVER (
                      PARTITION BY listing_id ORDER BY pt ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS ever
        FROM entries""", f"""
        CREATE TEMPORARY VIEW pairs AS
        SELECT {rowcols}, b AS brand_id, CASE WHEN brand_id IS NULL THEN {clear} ELSE action END AS action,
               COALESCE(removed, FALSE) AS removed, decision, pt
        FROM flag_history CROSS JOIN UNNEST(
            CASE WHEN brand_id IS NULL THEN ARRAY_EXCEPT(ever, flagged) ELSE ARRAY[brand_id] END) AS p(b)
        WHERE b IS NOT NULL""", """
        CREATE TEMPORARY VIEW transitions AS
        SELECT *,
               LAG(action) OVER (PARTITION BY listing_id, brand_id ORDER BY pt) AS prev_action,
               LAG(removed) OVER (PARTITION BY listing_id, brand_id ORDER BY pt) AS prev_removed
        FROM pairs""", f"""
        CREATE TEMPORARY VIEW changes AS
        SELECT listing_id, brand_id, CASE WHEN action = {clear} THEN {clear_json} ELSE decision END AS v
        FROM transitions
        WHERE (action <> {clear} AND (prev_action IS NULL OR prev_action <> action OR prev_removed <> removed))
           OR (action = {clear} AND prev_action <> {clear})"""]


def image_config(settings: Settings) -> ImageScan | None:
    """Image scanning for the job (pipelines.scan_config.image_scan)."""
    return image_scan(settings)


class FileScanProgress(Protocol):
    def started(self, job_id: str) -> None: ...
    def row(self, kind: str) -> None: ...
    def close(self, done: bool) -> None: ...


@dataclass(frozen=True, slots=True)
class FileScanResult:
    records: int
    decisions: int
    dead_letters: int
    ledger_events: int


def file_results(t_env: TableEnvironment):
    """File mode's one query: (output, v) rows of the decisions, dead letters and ledger events."""
    return t_env.sql_query(
        "SELECT 'decision' AS output, v FROM decisions_out UNION ALL SELECT 'dead' AS output, v FROM dead_out "
        "UNION ALL SELECT 'ledger' AS output, v FROM ledger_out")


def run_file_scan(settings: Settings, brands: Path, listings: Path, out: Path, dead_out: Path,
                  parallelism: int = 1, feedback: Path | None = None, ledger_out: Path | None = None,
                  progress: Callable[[int], "FileScanProgress"] | None = None) -> FileScanResult:
    """File mode: the same graph on the local mini-cluster, results collected in stream order.
    `progress`, given the number of input records, returns what is told the job id once the job
    runs and each output row's kind (`zeroscan scan`'s progress bar)."""
    work = settings.state_dir / "file-scan"
    work.mkdir(parents=True, exist_ok=True)
    tagged = work / f"input-{os.getpid()}.tagged"
    n = merge_tagged(listings, feedback, tagged)
    shown = progress(n) if progress is not None else None
    done = False
    try:
        overrides = {"state.backend.type": "hashmap", "execution.checkpointing.interval": None}
        if shown is not None:  # the web UI's job metrics refreshed every second, not every 10 s
            overrides["metrics.fetcher.update-interval"] = "1000"
        t_env = make_table_env(settings, parallelism, kafka=False, overrides=overrides)
        register_file_io(t_env, tagged)
        images = image_config(settings)
        if images is not None:
            images = dataclasses.replace(images, listing_base_dir=str(listings.resolve().parent),
                                         brands_base_dir=str(brands.resolve().parent))
        define_scan(t_env, ScanConfig(MODEL_VERSION, BrandInput(path=str(brands.resolve())), settings.signals,
                                      files=(("listing", str(listings.resolve())),
                                             ("feedback", str(feedback.resolve()) if feedback else "")),
                                      images=images, udf=settings.scan_udf, gc_young=settings.gc_young),
                    settings.unchanged_recheck_s,
                    settings.unchanged_cache_slots)
        results = file_results(t_env)
        counts = {"decision": 0, "dead": 0, "ledger": 0}
        out.parent.mkdir(parents=True, exist_ok=True)
        ledger_path = ledger_out or out.with_name(out.stem + ".ledger.jsonl")
        result = results.execute()
        if shown is not None:
            shown.started(str(result.get_job_client().get_job_id()))
        with open(out, "w", encoding="utf-8") as fd, open(dead_out, "w", encoding="utf-8") as fdl, \
                open(ledger_path, "w", encoding="utf-8") as fl, result.collect() as rows:
            files = {"decision": fd, "dead": fdl, "ledger": fl}
            for row in rows:
                files[row[0]].write(row[1] + "\n")
                counts[row[0]] += 1
                if shown is not None:
                    shown.row(row[0])
        done = True
    finally:
        tagged.unlink(missing_ok=True)
        if shown is not None:
            shown.close(done)
    return FileScanResult(n, counts["decision"], counts["dead"], counts["ledger"])


def build_kafka_statements(settings: Settings, parallelism: int, *, cluster: bool = False
                           ) -> tuple[TableEnvironment, StatementSet]:
    t_env = make_table_env(settings, parallelism, kafka=True, cluster=cluster)
    register_kafka_io(t_env, settings)
    define_scan(t_env, ScanConfig(MODEL_VERSION, BrandInput(kafka=settings.kafka, topic=settings.topics.brands),
                                  settings.signals, ledger_kafka=settings.kafka, ledger_topic=settings.topics.ledger,
                                  images=image_config(settings), udf=settings.scan_udf, gc_young=settings.gc_young),
               settings.unchanged_recheck_s, settings.unchanged_cache_slots, price_loop=_price_loop(settings))
    stmts = t_env.create_statement_set()
    # Both topics from one Table: a query is converted once, so the two inserts share its plan
    # nodes and the transition runs once. Two INSERT ... SELECT statements would each expand
    # the views again, with their own UNNEST correlation ids: plans that differ in digest, which
    # the planner cannot reuse, so the per-brand steps (state included) would run twice.
    changes = t_env.sql_query("SELECT decision_key, status_key, v FROM keyed_changes")
    stmts.add_insert("decisions_kafka", changes.select(col("decision_key").alias("k"), col("v")))
    stmts.add_insert("status_kafka", changes.select(col("status_key").alias("k"), col("v")))
    stmts.add_insert_sql("INSERT INTO dead_letter_kafka SELECT k, v FROM dead_out")
    stmts.add_insert_sql("INSERT INTO ledger_kafka SELECT k, v FROM ledger_out")
    if _price_loop(settings):
        stmts.add_insert_sql("INSERT INTO quiet_kafka SELECT k, v FROM quiet_out")
    return t_env, stmts


def _price_loop(settings: Settings) -> bool:
    return settings.price_loop and settings.unchanged_recheck_s > 0


def latest_restore_point(settings: Settings) -> str | None:
    """The newest completed savepoint or retained checkpoint (one with `_metadata`), so a job
    that was stopped, cancelled or killed resumes with its state and offsets."""
    savepoints, checkpoints = _local_dir(settings.savepoint_uri), _local_dir(settings.checkpoint_uri)
    candidates = list(savepoints.glob("savepoint-*/_metadata")) if savepoints else []
    candidates += list(checkpoints.glob("*/chk-*/_metadata")) if checkpoints else []
    if not candidates:
        return None
    return str(max(candidates, key=lambda p: p.stat().st_mtime).parent)


# Flink's words when a restore point holds state of an operator the job's plan does not have.
_PLAN_MISMATCH = "Cannot map checkpoint/savepoint state for operator"


def plan_mismatch(exc: BaseException) -> bool:
    """Whether the job failed to start because its restore point was taken by another plan."""
    return _PLAN_MISMATCH in str(exc)


def restore_mismatch_help(resume: str, settings: Settings) -> str:
    """What to do when the restore point was taken by a job of another plan (a version whose SQL
    differs: Flink maps a SQL job's state by operator ids derived from its plan)."""
    return (f"cannot resume from {resume}: it holds state of an operator this version's plan does not have "
            "(it was taken by a version of the job whose plan differs: Flink restores a SQL job's state only "
            "into operators of the same plan). Nothing was read or written. Either run the version that took "
            "it, or start this version keeping the state that still maps and dropping the rest with "
            "ZEROSCAN_FLINK_OPTS=execution.state-recovery.ignore-unclaimed-state=true (what a dropped step held "
            "starts empty: unchanged re-posts are scanned once more, a decision already written may be written "
            "again, and a listing flagged before that is clean now is not cleared), or start fresh by moving "
            f"{_local_dir(settings.savepoint_uri) or settings.savepoint_uri} and "
            f"{_local_dir(settings.checkpoint_uri) or settings.checkpoint_uri} aside")


def _local_dir(uri: str) -> Path | None:
    """The folder behind a file:// URI; None for remote storage (s3://, hdfs://), where the
    embedded job does not look for restore points itself: pass execution.state-recovery.path."""
    from urllib.parse import unquote, urlparse

    u = urlparse(uri)
    return Path(unquote(u.path)) if u.scheme == "file" else None


@dataclass(frozen=True, slots=True)
class JobStop:
    """How a stopped job ended: with a savepoint (its path), or cancelled when the savepoint
    failed, took longer than `Settings.stop_timeout_s` or a second signal came (`why`); the next
    run then resumes from the job's last checkpoint, which a cancel keeps."""
    savepoint: str | None
    why: str | None = None


# After a cancel the embedded mini-cluster shuts itself down; how long to wait for that.
CANCEL_TIMEOUT_S = 30


def run_kafka_job(settings: Settings, parallelism: int = 1, stop: threading.Event | None = None,
                  started: Callable[[str], None] | None = None,
                  stopping: Callable[[], None] | None = None) -> JobStop:
    """Run until `stop` is set (or SIGTERM/SIGINT), then stop with a savepoint so the final
    transactions commit; the next run resumes from it. A savepoint that fails or is not done
    within `settings.stop_timeout_s` (or a second signal) cancels the job instead. `started` is
    called with the job id once the job is submitted, `stopping` once a stop begins."""
    t_env, stmts = build_kafka_statements(settings, parallelism)
    resume = latest_restore_point(settings)
    if resume:
        t_env.get_config().set("execution.state-recovery.path", resume)
        log.info("resuming from savepoint %s", resume)
    request = StopRequest(stop).install()
    result = stmts.execute()
    client = result.get_job_client()
    if started is not None:
        started(str(client.get_job_id()))
    while not request.wait(0.5):
        # A JobStatus enum (its str() is "JobStatus.FAILED"): ended for good when cancelled from
        # outside, failed past its restart strategy, or finished.
        # The embedded mini-cluster shuts itself down once its job has ended, so the status may
        # not be readable any more by the next poll.
        try:
            status = client.get_job_status().result()
        except Py4JJavaError as e:
            raise RuntimeError("scanner job ended: its cluster is gone (cancelled or failed from outside: "
                               f"{e.java_exception.getMessage()})") from None
        if status.is_globally_terminal_state():
            raise RuntimeError(f"scanner job ended: {status.name}")
    if stopping is not None:
        stopping()
    return _stop(client, settings, request)


def _stop(client, settings: Settings, request: StopRequest) -> JobStop:
    """Stop with a canonical savepoint, waited for at most `settings.stop_timeout_s` (cut short by
    a second signal); else cancel. The Python JobClient exposes neither Flink 2.x's savepoint format
    argument nor a bounded wait, so the Java client is called directly."""
    from pyflink.java_gateway import get_gateway

    jvm = get_gateway().jvm
    j_client = client._j_job_client
    why = None
    if settings.stop_timeout_s > 0 and not request.forced:
        fmt = jvm.org.apache.flink.core.execution.SavepointFormatType.CANONICAL
        future = j_client.stopWithSavepoint(False, settings.savepoint_uri, fmt)
        deadline = time.monotonic() + settings.stop_timeout_s
        while why is None:
            wait_ms = max(1, min(500, int((deadline - time.monotonic()) * 1000)))
            try:
                return JobStop(str(future.get(wait_ms, jvm.java.util.concurrent.TimeUnit.MILLISECONDS)))
            except Py4JJavaError as e:
                if e.java_exception.getClass().getName() != "java.util.concurrent.TimeoutException":
                    why = f"the savepoint failed: {_root_message(e.java_exception)}"
                elif request.forced:
                    why = "a second signal came before the savepoint was done"
                elif time.monotonic() >= deadline:
                    why = f"the savepoint was not done within {settings.stop_timeout_s} s"
    else:
        why = "a stop without a savepoint was asked for (ZEROSCAN_STOP_TIMEOUT_S=0)" if not request.forced \
            else "a second signal came before the stop began"
    log.warning("scanner job: %s; cancelling it (the next run resumes from its last checkpoint)", why)
    try:
        j_client.cancel().get(CANCEL_TIMEOUT_S, jvm.java.util.concurrent.TimeUnit.SECONDS)
    except Py4JJavaError as e:
        # The job may have ended meanwhile (the savepoint completed after all, or it failed):
        # its cluster is then gone or the job is already terminal; anything else is an error.
        try:
            status = client.get_job_status().result()
        except Py4JJavaError:
            status = None
        if status is not None and not status.is_globally_terminal_state():
            raise RuntimeError(f"scanner job did not cancel within {CANCEL_TIMEOUT_S} s: "
                               f"{_root_message(e.java_exception)}") from None
    return JobStop(None, why)


def _root_message(j_exc) -> str:
    while j_exc.getCause() is not None and j_exc.getCause() is not j_exc:
        j_exc = j_exc.getCause()
    return f"{j_exc.getClass().getSimpleName()}: {j_exc.getMessage()}"


def main(argv: list[str] | None = None) -> None:
    """Entry point for a real cluster: `flink run -py pipelines/scanner_job.py` submits the
    Kafka job; the cluster (not this process) owns checkpoints, savepoints and restarts."""
    import argparse

    ap = argparse.ArgumentParser(description="zeroscan scanner job (Kafka in, decisions out)")
    settings = Settings.from_env()
    ap.add_argument("--parallelism", type=int, default=settings.parallelism)
    args = ap.parse_args(argv)
    _t_env, stmts = build_kafka_statements(settings, args.parallelism, cluster=True)
    result = stmts.execute()
    print(f"zeroscan scanner job submitted: {result.get_job_client().get_job_id()}", flush=True)


if __name__ == "__main__":
    main()
