"""Thin PyFlink operators. The scan operator is a vectorised (pandas) scalar function: Flink
hands it Arrow batches of raw records, so parsing, memo look-ups and index queries run once
per batch of up to `python.fn-execution.arrow.batch.size` rows, not once per record."""
from __future__ import annotations

import logging
import time
from pathlib import Path

import pandas as pd
from pyflink.common import Row
from pyflink.table import DataTypes
from pyflink.table.udf import FunctionContext, ScalarFunction, udf

from brand_signals.records import Action
from brand_signals.scanner import Scanner
from brand_signals.sources import load as load_sources
from connectors.brand_feed import (CatchUpError, LedgerFeed, freeze_long_lived, open_brand_feed,
                                   space_young_collections)
from connectors.file_input import split_tag
from connectors.serde import Origin
from connectors.worker_slot import claim_slot
from pipelines.scan_config import ImageScan, ScanConfig
from pipelines.steps import RESCAN, OutRow, RowKind, ScanContext, rescan_needs, scan_records

log = logging.getLogger(__name__)

# One row per input record, typed; the only JSON in it is whole records the scan made (a
# decision, a dead letter, a ledger event). A `clear` is written by the job from the columns.
# `brands`: the brands the record states (steps.Flag), in order; a listing scan starts it with
# a null, the sweep: the job clears every brand flagged before and not named now. Per brand,
# its action, whether it rests on a removal, and its decision (pandas UDFs take no array of
# rows, so a flag's fields are maps keyed by brand). `state_key`: a listing scan's per-brand
# state in one string (steps.OutRow.state_key), so the job skips the per-brand steps for a scan
# that says what the one before said.
SCAN_RESULT = DataTypes.ROW([
    DataTypes.FIELD("kind", DataTypes.STRING()),
    DataTypes.FIELD("listing_id", DataTypes.STRING()),
    DataTypes.FIELD("brands", DataTypes.ARRAY(DataTypes.STRING())),
    DataTypes.FIELD("actions", DataTypes.MAP(DataTypes.STRING(), DataTypes.STRING())),
    DataTypes.FIELD("removed", DataTypes.MAP(DataTypes.STRING(), DataTypes.BOOLEAN())),
    DataTypes.FIELD("decisions", DataTypes.MAP(DataTypes.STRING(), DataTypes.STRING())),
    DataTypes.FIELD("flagged", DataTypes.ARRAY(DataTypes.STRING())),
    DataTypes.FIELD("state_key", DataTypes.STRING()),
    DataTypes.FIELD("seller_id", DataTypes.STRING()),
    DataTypes.FIELD("event_time", DataTypes.BIGINT()),
    DataTypes.FIELD("src_topic", DataTypes.STRING()),
    DataTypes.FIELD("src_partition", DataTypes.BIGINT()),
    DataTypes.FIELD("src_offset", DataTypes.BIGINT()),
    DataTypes.FIELD("src_file", DataTypes.STRING()),
    DataTypes.FIELD("src_line", DataTypes.BIGINT()),
    DataTypes.FIELD("reason", DataTypes.STRING()),
    DataTypes.FIELD("decided_at", DataTypes.BIGINT()),
    DataTypes.FIELD("dead", DataTypes.STRING()),
    DataTypes.FIELD("ledger", DataTypes.STRING()),
    DataTypes.FIELD("quiet", DataTypes.BOOLEAN()),
])
TAGGED = "tagged"
# A rescan is made right after its brand change reached the `brands` topic, which this worker's
# feed follows too: it waits this long for its catalogue to include the change (then the
# rescan is dead-lettered with the reason, never scanned against an older catalogue).
RESCAN_CATALOG_WAIT_S = 60.0


class ScanFunction(ScalarFunction):
    """(raw record, origin, stream) -> SCAN_RESULT.

    `config`: the operator's one frozen configuration (pipelines.scan_config.ScanConfig; it
    holds Kafka secrets: never log it). It keeps no per-listing state: what a listing
    presented reaches it with each feedback event (`context_raw`, from the job's keyed state)."""

    def __init__(self, config: ScanConfig):
        self.config = config
        self.feed = self.ledger = self.scanner = None

    def open(self, function_context: FunctionContext):
        cfg = self.config
        group = function_context.get_metric_group().add_group("zeroscan")
        # At start, not inside the first batches; and before the feed, whose freeze after its
        # catalogue build then takes these word lists too (one full walk at start, not two).
        Scanner.load_reference_data()
        try:
            self.feed = open_brand_feed(cfg.brands)
            self.ledger = LedgerFeed(cfg.ledger_kafka, cfg.ledger_topic)
        except CatchUpError as e:
            # Flink restarts the task; the reason must be in the job log (and the exception
            # history of the job), not only a silent wait.
            group.counter("startup_failures").inc()
            log.error("scan operator cannot start: %s", e)
            raise
        self.scanner = Scanner(cfg.model_version, sources=load_sources(cfg.signals, images=_image_factory(cfg.images)),
                               image_base_dir=cfg.images.listing_base_dir if cfg.images is not None else None)
        self.metrics = _Metrics(group)
        self._files = dict(cfg.files)
        freeze_long_lived()   # what came after the feed's build: the ledger replica, the scanner
        space_young_collections(cfg.gc_young)

    def eval(self, value: pd.Series, source, part, pos, stream, context_raw, key) -> pd.DataFrame:
        # `context_raw`: on a feedback event, the listing's latest update (None: never seen). It
        # comes from the keyed step before this one (an OVER aggregate partitioned by listing_id),
        # which also routes every listing's records to the same subtask. `key`: the listing_id
        # that step read (steps.scan_records refuses a record read apart).
        n = len(value)
        return result_frame(self.scan(value, _column(source, n), _column(part, n), _column(pos, n),
                                      _column(stream, n), [None if pd.isna(c) else c for c in _column(context_raw, n)],
                                      [None if pd.isna(k) else k for k in _column(key, n)]))

    def scan(self, values, sources, parts, poses, streams_in, contexts, keys) -> list[OutRow]:
        raws, origins, streams = [], [], []
        files = self._files
        for v, s, p, o, st in zip(values, sources, parts, poses, streams_in):
            if st == TAGGED and v is not None:
                st, line, v = split_tag(v)
                origins.append(Origin(files.get(st, s), line=line))
            else:
                origins.append(Origin(s, None if p is None or pd.isna(p) else int(p),
                                      None if o is None or pd.isna(o) else int(o)))
            raws.append(v)
            streams.append(st)
        catalog = self.feed.catalog
        if RESCAN in streams:
            catalog = self._catalog_with(rescan_needs(raws, streams))
        ctx = ScanContext(catalog, self.scanner, self.ledger.state, None, self.ledger.apply_local)
        started = time.perf_counter()
        hits, misses = self.scanner.memo_hits, self.scanner.memo_misses
        with self.ledger.reading():
            rows = scan_records(raws, origins, ctx, int(time.time() * 1000), streams, contexts, keys)
        self.metrics.batch(rows, started, self.scanner.memo_hits - hits, self.scanner.memo_misses - misses)
        return rows

    def _catalog_with(self, need: dict[str, int]):
        """The feed's catalogue once it includes these brand versions (or after the wait)."""
        deadline = time.monotonic() + RESCAN_CATALOG_WAIT_S
        while True:
            catalog = self.feed.catalog
            if all(catalog.has_version(b, v) for b, v in need.items()) or time.monotonic() >= deadline:
                return catalog
            time.sleep(0.05)

    def close(self):
        for part in (self.feed, self.ledger, self.scanner):
            if part is not None:
                part.close()


class _Metrics:
    """The scan operator's metrics, reported through Flink's metric system (its Prometheus
    reporter is configured in flink-conf/config.yaml), next to Flink's own operator metrics."""

    def __init__(self, g):
        self.records = g.counter("records")
        self.feedback = g.counter("feedback_events")
        self.dead = g.counter("dead_letters")
        self.memo_hits = g.counter("memo_hits")
        self.memo_misses = g.counter("memo_misses")
        self.flagged = {a.value: g.add_group("action", a.value).counter("flagged") for a in Action}
        self.batch_ms = g.distribution("batch_ms")
        self.batch_rows = g.distribution("batch_rows")
        self._max_ms = 0
        g.gauge("batch_ms_max", lambda: self._max_ms)   # the slowest batch since start

    def batch(self, rows, started: float, hits: int, misses: int) -> None:
        self.records.inc(len(rows))
        self.memo_hits.inc(hits)
        self.memo_misses.inc(misses)
        for r in rows:
            if r.kind is RowKind.DEAD:
                self.dead.inc()
            elif r.ledger is not None:
                self.feedback.inc()
            for f in r.flags:
                if f.action is not Action.CLEAR:
                    self.flagged[f.action.value].inc()
        ms = int((time.perf_counter() - started) * 1000)
        self.batch_ms.update(ms)
        self._max_ms = max(self._max_ms, ms)
        self.batch_rows.update(len(rows))


def _image_factory(cfg: ImageScan | None):
    """Builds the image signal index for a catalogue (logo, OCR and product-photo indexes, the
    ONNX models, the sha256 result cache), or None when image scanning is off. Brand images
    (operator input) are read by the trusted fetch; listing images (seller input) only by the
    ListingFetcher under the egress policy: http(s) in Kafka mode, in file mode also paths
    inside the listings file's folder (`listing_base_dir`)."""
    if cfg is None:
        return None
    slot: list[Path] = []
    fetchers: list = []
    references: list = []

    def build(catalog):
        from brand_signals.images.image_signals import ImageSignals, ReferenceCache
        from connectors.image_fetch import ListingFetcher, fetch

        if not slot:  # one embedded cache per worker process, held for its lifetime
            slot.append(claim_slot(Path(cfg.cache_dir))[0])
            references.append(ReferenceCache())  # brand images analysed once, not on every rebuild
        if not fetchers:  # one fetch pool and negative cache per worker, across catalogue rebuilds
            fetchers.append(ListingFetcher(cfg.egress.with_local_root(cfg.listing_base_dir), cfg.fetch))
        return ImageSignals.build(catalog.brands.values(), fetch, cfg.brands_base_dir,
                                  cache_path=slot[0], threads=1, ocr=cfg.ocr, ocr_upscale=cfg.ocr_upscale,
                                  references=references[0], listing_fetch=fetchers[0], wordmarks=catalog.wordmarks,
                                  device=cfg.device)

    return build


def row_values(r: OutRow) -> tuple:
    """One scan row's SCAN_RESULT fields, in order; maps as (key, value) pairs."""
    o = r.origin
    if o is None:
        src = _NO_SOURCE
    elif o.partition is None and o.offset is None:
        src = (None, None, None, o.source, o.line or None)
    else:
        src = (o.source, o.partition, o.offset, None, None)
    return (r.kind.value, r.listing_id, ([None] if r.sweep else []) + [f.brand_id for f in r.flags],
            [(f.brand_id, f.action.value) for f in r.flags], [(f.brand_id, f.removed) for f in r.flags],
            [(f.brand_id, f.decision) for f in r.flags], list(r.flagged), r.state_key, r.seller_id, r.event_time,
            *src, r.reason, r.decided_at, r.payload, r.ledger, r.quiet)


_INT_COLUMNS = frozenset(("event_time", "src_partition", "src_offset", "src_line", "decided_at"))
_MAP_COLUMNS = frozenset(("actions", "removed", "decisions"))


def result_frame(rows: list[OutRow]) -> pd.DataFrame:
    """The scan's rows as SCAN_RESULT columns."""
    columns = zip(*map(row_values, rows)) if rows else ((),) * len(SCAN_RESULT.names)
    return pd.DataFrame({name: _ints(col) if name in _INT_COLUMNS else list(col)
                         for name, col in zip(SCAN_RESULT.names, columns)})


_NO_SOURCE = (None, None, None, None, None)


def _ints(values) -> pd.Series:
    """Integers with nulls (object dtype: a float column would lose large values, and Flink's
    Arrow conversion passes a null mask, which pandas' nullable arrays refuse)."""
    return pd.Series(list(values), dtype=object)


def _column(x, n: int):
    """Flink folds constant arguments (file mode has no partition/offset) into one scalar."""
    return x if isinstance(x, pd.Series) else [x] * n


class ScanRowFunction(ScanFunction):
    """The same scan, one record per call (a general Python UDF, which Flink's thread mode also
    runs): kept to measure the crossing against the vectorised form (README, "Throughput"),
    not for use: it loses the batch (one image fetch budget, index and model call per record)."""

    def eval(self, value, source, part, pos, stream, context_raw, key):
        [row] = self.scan([value], [source], [part], [pos], [stream], [context_raw], [key])
        return Row(*(dict(v) if name in _MAP_COLUMNS else v for name, v in zip(SCAN_RESULT.names, row_values(row))))


def scan_udf(config: ScanConfig):
    if config.udf == "row":
        return udf(ScanRowFunction(config), result_type=SCAN_RESULT)
    return udf(ScanFunction(config), result_type=SCAN_RESULT, func_type="pandas")
