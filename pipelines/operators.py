"""Thin PyFlink operators. The scan operator is a vectorised (pandas) scalar function: Flink
hands it Arrow batches of raw records, so parsing, memo look-ups and index queries run once
per batch of up to `python.fn-execution.arrow.batch.size` rows, not once per record."""
from __future__ import annotations

import logging
import time
from pathlib import Path

import pandas as pd
from pyflink.table import DataTypes
from pyflink.table.udf import FunctionContext, ScalarFunction, udf

from brand_signals.records import Action
from brand_signals.scanner import Scanner
from connectors.brand_feed import CatchUpError, LedgerFeed, open_brand_feed
from connectors.file_input import split_tag
from connectors.serde import Origin
from connectors.worker_slot import claim_slot
from pipelines.steps import RowKind, ScanContext, scan_records

log = logging.getLogger(__name__)

SCAN_RESULT = DataTypes.ROW([
    DataTypes.FIELD("kind", DataTypes.STRING()),
    DataTypes.FIELD("listing_id", DataTypes.STRING()),
    DataTypes.FIELD("brand_id", DataTypes.STRING()),
    DataTypes.FIELD("action", DataTypes.STRING()),
    DataTypes.FIELD("payload", DataTypes.STRING()),
    DataTypes.FIELD("ledger", DataTypes.STRING()),
    DataTypes.FIELD("clear", DataTypes.STRING()),
])
TAGGED = "tagged"


class ScanFunction(ScalarFunction):
    """(raw record, origin, stream) -> (kind, listing_id, brand_id, action, payload, ledger, clear).

    `config`: brands (feed config), ledger ({kafka, topic} or absent in file mode; `kafka` is a
    KafkaClientConfig holding secrets: never log the config), files ({listing, feedback}
    paths for tagged file input), model_version. It keeps no per-listing state: what a listing
    presented reaches it with each feedback event (`context_raw`, from the job's keyed state)."""

    def __init__(self, config: dict):
        self.config = config
        self.feed = self.ledger = self.scanner = None

    def open(self, function_context: FunctionContext):
        cfg = self.config
        group = function_context.get_metric_group().add_group("zeroscan")
        try:
            self.feed = open_brand_feed(cfg["brands"])
            led = cfg.get("ledger") or {}
            self.ledger = LedgerFeed(led.get("kafka"), led.get("topic"))
        except CatchUpError as e:
            # Flink restarts the task; the reason must be in the job log (and the exception
            # history of the job), not only a silent wait.
            group.counter("startup_failures").inc()
            log.error("scan operator cannot start: %s", e)
            raise
        self.scanner = Scanner(cfg["model_version"], images=_image_factory(cfg.get("images")),
                               image_base_dir=(cfg.get("images") or {}).get("listing_base_dir"))
        self.metrics = _Metrics(group)

    def eval(self, value: pd.Series, source, part, pos, stream, seen, context_raw) -> pd.DataFrame:
        # `seen` (updates of this listing so far) comes from the keyed step before this one;
        # taking it keeps that step, which routes every listing to the same subtask, in the plan.
        # `context_raw`: on a feedback event, the listing's latest update (None: never seen).
        n = len(value)
        raws, origins, streams = [], [], []
        files = self.config.get("files") or {}
        for v, s, p, o, st in zip(value, _column(source, n), _column(part, n), _column(pos, n),
                                  _column(stream, n)):
            if st == TAGGED and v is not None:
                st, line, v = split_tag(v)
                origins.append(Origin(files.get(st, s), line=line))
            else:
                origins.append(Origin(s, None if pd.isna(p) else int(p), None if pd.isna(o) else int(o)))
            raws.append(v)
            streams.append(st)
        ctx = ScanContext(self.feed.catalog, self.scanner, self.ledger.state, None, self.ledger.apply_local)
        started = time.perf_counter()
        hits, misses = self.scanner.memo_hits, self.scanner.memo_misses
        with self.ledger.reading():
            rows = scan_records(raws, origins, ctx, int(time.time() * 1000), streams,
                                [None if pd.isna(c) else c for c in _column(context_raw, n)])
        self.metrics.batch(rows, started, self.scanner.memo_hits - hits, self.scanner.memo_misses - misses)
        return pd.DataFrame({
            "kind": [r.kind.value for r in rows],
            "listing_id": [r.listing_id for r in rows],
            "brand_id": [r.brand_id for r in rows],
            "action": [r.action for r in rows],
            "payload": [r.payload for r in rows],
            "ledger": [r.ledger for r in rows],
            "clear": [r.clear for r in rows],
        })

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
            if r.kind is RowKind.DECISION:
                self.flagged[r.action.split("+", 1)[0]].inc()
        ms = int((time.perf_counter() - started) * 1000)
        self.batch_ms.update(ms)
        self._max_ms = max(self._max_ms, ms)
        self.batch_rows.update(len(rows))


def _image_factory(cfg: dict | None):
    """Builds the image signal source for a catalogue (logo, OCR and product-photo indexes, the
    ONNX models, the sha256 result cache), or None when image scanning is off. Brand images
    (operator input) are read by the trusted fetch; listing images (seller input) only by the
    ListingFetcher under the egress policy: http(s) in Kafka mode, in file mode also paths
    inside the listings file's folder (`listing_base_dir`)."""
    if not cfg or not cfg.get("enabled"):
        return None
    slot: list[Path] = []
    fetchers: list = []
    references: list = []

    def build(catalog):
        from brand_signals.image_signals import ImageSignals, ReferenceCache
        from connectors.egress import EgressPolicy
        from connectors.image_fetch import FetchBudgets, ListingFetcher, fetch

        if not slot:  # one embedded cache per worker process, held for its lifetime
            slot.append(claim_slot(Path(cfg["cache_dir"]))[0])
            references.append(ReferenceCache())  # brand images analysed once, not on every rebuild
        if not fetchers:  # one fetch pool and negative cache per worker, across catalogue rebuilds
            policy = EgressPolicy.from_config(cfg.get("egress")).with_local_root(cfg.get("listing_base_dir"))
            fetchers.append(ListingFetcher(policy, FetchBudgets.from_config(cfg.get("fetch"))))
        return ImageSignals.build(catalog.brands.values(), fetch, cfg.get("brands_base_dir"),
                                  cache_path=slot[0], threads=1, ocr=cfg.get("ocr", True),
                                  ocr_upscale=cfg.get("ocr_upscale", False), references=references[0],
                                  listing_fetch=fetchers[0])

    return build


def _column(x, n: int):
    """Flink folds constant arguments (file mode has no partition/offset) into one scalar."""
    return x if isinstance(x, pd.Series) else [x] * n


def scan_udf(config: dict):
    return udf(ScanFunction(config), result_type=SCAN_RESULT, func_type="pandas")
