"""Thin PyFlink operators. The scan operator is a vectorised (pandas) scalar function: Flink
hands it Arrow batches of raw records, so parsing, memo look-ups and index queries run once
per batch of up to `python.fn-execution.arrow.batch.size` rows, not once per record."""
from __future__ import annotations

import time

import pandas as pd
from pyflink.table import DataTypes
from pyflink.table.udf import FunctionContext, ScalarFunction, udf

from brand_signals.scanner import Scanner
from connectors.brand_feed import open_brand_feed
from connectors.serde import Origin
from pipelines.steps import scan_records

SCAN_RESULT = DataTypes.ROW([
    DataTypes.FIELD("kind", DataTypes.STRING()),
    DataTypes.FIELD("listing_id", DataTypes.STRING()),
    DataTypes.FIELD("brand_id", DataTypes.STRING()),
    DataTypes.FIELD("action", DataTypes.STRING()),
    DataTypes.FIELD("payload", DataTypes.STRING()),
])


class ScanFunction(ScalarFunction):
    """raw record + origin -> (kind, listing_id, brand_id, action, payload)."""

    def __init__(self, feed_config: dict[str, str], model_version: str):
        self.feed_config = feed_config
        self.model_version = model_version
        self.feed = None
        self.scanner = None

    def open(self, function_context: FunctionContext):
        self.feed = open_brand_feed(self.feed_config)
        self.scanner = Scanner(self.model_version)

    def eval(self, value: pd.Series, source: pd.Series, part: pd.Series, pos: pd.Series) -> pd.DataFrame:
        n = len(value)
        origins = [Origin(s, None if pd.isna(p) else int(p), None if pd.isna(o) else int(o))
                   for s, p, o in zip(_column(source, n), _column(part, n), _column(pos, n))]
        rows = scan_records(list(value), origins, self.feed.catalog, self.scanner, int(time.time() * 1000))
        return pd.DataFrame({
            "kind": [r.kind.value for r in rows],
            "listing_id": [r.listing_id for r in rows],
            "brand_id": [r.brand_id for r in rows],
            "action": [r.action for r in rows],
            "payload": [r.payload for r in rows],
        })

    def close(self):
        if self.feed is not None:
            self.feed.close()


def _column(x, n: int):
    """Flink folds constant arguments (file mode has no partition/offset) into one scalar."""
    return x if isinstance(x, pd.Series) else [x] * n


def scan_udf(feed_config: dict[str, str], model_version: str):
    return udf(ScanFunction(feed_config, model_version), result_type=SCAN_RESULT, func_type="pandas")
