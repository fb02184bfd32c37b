"""The project's record schemas (brand_signals/schemas/project/) against records the code really
emits: decisions with every signal kind's `detail`, `clear` records, listing-status entries,
dead letters and ledger events. The job's per-listing transition (Flink SQL in
pipelines/scanner_job.py) is replayed here by `Transitions`, its plain-Python reading; the
integration tests run the SQL itself."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import orjson
import pytest
from referencing import Registry, Resource

from brand_signals.catalog import Catalog
from brand_signals.contract import parse_brand
from brand_signals.decide import decide
from brand_signals.feedback.context import ContextStore
from brand_signals.feedback.state import FeedbackPolicy, FeedbackState
from brand_signals.records import SignalKind
from brand_signals.scanner import Scanner
from connectors.serde import Origin
from pipelines.steps import OutRow, RowKind, ScanContext, scan_records

pytestmark = pytest.mark.unit

SCHEMAS = Path(__file__).resolve().parents[2] / "brand_signals" / "schemas"


def _registry() -> Registry:
    docs = [json.loads(p.read_text()) for p in [*SCHEMAS.glob("*.schema.json"), *SCHEMAS.glob("project/*.schema.json")]]
    return Registry().with_resources([(d["$id"], Resource.from_contents(d)) for d in docs])


REGISTRY = _registry()


def validator(name: str, pointer: str = "") -> jsonschema.Draft202012Validator:
    """`name` relative to the schemas folder, e.g. "project/decision.schema.json"."""
    schema = {"$ref": f"zeroscan/{name}{'#' + pointer if pointer else ''}"}
    return jsonschema.Draft202012Validator(schema, registry=REGISTRY,
                                           format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


DECISION = validator("project/decision.schema.json")
CONTRACT_DECISION = validator("decision.schema.json")
SIGNAL = validator("project/signal.schema.json")
STATUS = validator("project/listing-status.schema.json")
STATUS_KEY = validator("project/listing-status.schema.json", "/$defs/key")
DEAD = validator("project/dead-letter.schema.json")
LEDGER = validator("project/feedback-ledger.schema.json")


def check_decision(d: dict) -> None:
    DECISION.validate(d)
    CONTRACT_DECISION.validate(d)       # the added fields keep it a contract decision


def clear_record(r: OutRow, brand_id: str) -> dict:
    """The `clear` the job writes (scanner_job.transition_views: JSON_OBJECT) for brand_id."""
    out = {"listing_id": r.listing_id, "seller_id": r.seller_id, "brand_id": brand_id, "action": "clear",
           "score": 0.0, "signals": [{"kind": "rescan", "score": 0.0, "detail": {"reason": r.reason}}],
           "decided_at": r.decided_at}
    if r.event_time is not None:
        out["event_time"] = r.event_time
    if r.origin is not None:
        out["source"] = r.origin.to_json()
    return out


class Transitions:
    """The job's transition step in plain Python (scanner_job.transition_views): per listing
    the brands it was ever flagged for, per listing and brand the previous state; a decision
    when a brand's flag is set or its action changes, a `clear` when a flagged brand is no
    longer named by a listing scan (or its flag is lifted on appeal)."""

    def __init__(self) -> None:
        self.ever: dict[str, list[str]] = {}
        self.prev: dict[tuple[str, str], tuple[str, bool]] = {}
        self.decisions: list[tuple[str, dict]] = []
        self.status: list[tuple[list, dict]] = []
        self.values: list[bytes] = []

    def feed(self, rows: list[OutRow]) -> None:
        for r in rows:
            if r.kind not in (RowKind.DECISION, RowKind.PASS):
                continue
            ever = self.ever.setdefault(r.listing_id, [])
            pairs = [(b, "clear", False, None) for b in ever if b not in r.flagged] if r.sweep else []
            pairs += [(f.brand_id, f.action.value, f.removed, f.decision) for f in r.flags]
            ever += [f.brand_id for f in r.flags if f.brand_id not in ever]
            for brand, action, removed, decision in pairs:
                prev = self.prev.get((r.listing_id, brand))
                self.prev[r.listing_id, brand] = (action, removed)
                if action != "clear" and prev != (action, removed):
                    v = decision.encode()
                elif action == "clear" and prev is not None and prev[0] != "clear":
                    v = orjson.dumps(clear_record(r, brand), option=orjson.OPT_SORT_KEYS)   # as JSON_OBJECT
                else:
                    continue
                self.values.append(v)
                self.decisions.append((r.listing_id, orjson.loads(v)))
                self.status.append(([r.listing_id, brand], orjson.loads(v)))


BRANDS = [
    {"brand_id": "veltrix", "name": "Veltrix", "trademarks": ["Veltrix"], "authorized_sellers": ["vx-store"],
     "min_price": {"amount": 50, "currency": "USD"}, "enforcement": "takedown", "version": 3},
    {"brand_id": "lumora", "name": "Lumora", "trademarks": ["Lumora"], "categories": ["beauty"],
     "enforcement": "review", "version": 1},
]


def listing(lid: str, title: str, seller: str = "s-1", t: int = 1000, **kw) -> bytes:
    return json.dumps({"listing_id": lid, "seller_id": seller, "event_time": t, "title": title, **kw}).encode()


def feedback(kind: str, lid: str, brand: str = "veltrix", t: int = 2000, **kw) -> bytes:
    return json.dumps({"kind": kind, "listing_id": lid, "brand_id": brand, "event_time": t, "actor": "owner-1",
                       **kw}).encode()


class Run:
    """scan_records over batches with Kafka-like origins, its rows through `Transitions`."""

    def __init__(self, policy: FeedbackPolicy | None = None):
        cat = Catalog.build([parse_brand(json.dumps(b)) for b in BRANDS], version=1)
        self.ctx = ScanContext(cat, Scanner("zeroscan-test"), FeedbackState(policy or FeedbackPolicy()), ContextStore())
        self.offsets = {"listings": 0, "feedback": 0}
        self.t = Transitions()
        self.rows: list[OutRow] = []

    def batch(self, *records: tuple[str, bytes | None]) -> list[OutRow]:
        origins = []
        for stream, _raw in records:
            topic = "listings" if stream == "listing" else "feedback"
            origins.append(Origin(topic, 0, self.offsets[topic]))
            self.offsets[topic] += 1
        rows = scan_records([r for _s, r in records], origins, self.ctx, 5000, [s for s, _r in records])
        self.t.feed(rows)
        self.rows += rows
        return rows


def L(raw: bytes | None) -> tuple[str, bytes | None]:
    return "listing", raw


def F(raw: bytes) -> tuple[str, bytes]:
    return "feedback", raw


def test_signal_schema_covers_every_kind_the_code_emits():
    schema = json.loads((SCHEMAS / "project" / "signal.schema.json").read_text())
    kinds = set(schema["properties"]["kind"]["enum"])
    assert kinds == {k.value for k in SignalKind} | {"rescan"}
    branched = {b["if"]["properties"]["kind"]["const"] for b in schema["allOf"]}
    assert branched == kinds
    assert all(k in schema["$defs"] for k in kinds)


def test_decisions_clears_status_dead_letters_and_ledger_events_follow_the_schemas():
    run = Run(FeedbackPolicy(min_decided=1))
    first = run.batch(
        L(listing("cheap", "Veltrix cordless drill 18V", price={"amount": 9.5, "currency": "USD"})),
        L(listing("byline", "Cordless drill 18V", brand="Veltrix")),
        L(listing("leet", "V3ltr1x impact driver")),
        L(listing("cream", "Lumora night cream", category="beauty/face")),
        L(listing("clean", "Plain steel hammer")),
        L(b"{not json"),
        L(b'{"listing_id": "bin", "title": "\xff\xfe"}'),
        L(None),
        L(b'{"listing_id": "big", "seller_id": "s", "event_time": 1, "title": "' + b"x" * (1 << 20) + b'"}'),
    )
    assert [r.kind for r in first] == [RowKind.DECISION] * 4 + [RowKind.PASS] + [RowKind.DEAD] * 4
    run.batch(
        F(feedback("brand_removal", "cheap", reason="counterfeit")),   # accepted: takedown
        F(feedback("brand_removal", "never-seen")),                    # held for review
        F(feedback("brand_removal", "clean")),                         # refused: not presented
        F(feedback("appeal_upheld", "cheap")),                         # reinstated: clear
        F(feedback("brand_removal", "leet")),                          # the brand is suspended: review
    )
    run.batch(
        L(listing("copy", "cordless drill 18V original VX-4471 Veltrix", seller="s-2")),
        L(listing("cream", "Veltrix drill with Lumora night cream", category="beauty/face", t=3000)),  # brand switch
        L(json.dumps({"listing_id": "byline", "seller_id": "s-1", "event_time": 4000, "op": "delete"}).encode()),
    )
    decisions = [d for _k, d in run.t.decisions]
    for d in decisions:
        check_decision(d)
        for s in d["signals"]:
            SIGNAL.validate(s)
    for key, value in run.t.status:
        STATUS_KEY.validate(key)
        STATUS.validate(value)
        assert [value["listing_id"], value["brand_id"]] == key
    dead = [orjson.loads(r.payload) for r in run.rows if r.kind is RowKind.DEAD]
    for d in dead:
        DEAD.validate(d)
    assert {("record_base64" in d, bool(d.get("record_truncated"))) for d in dead} == {
        (False, False), (True, False), (False, True)}
    ledger = [orjson.loads(r.ledger) for r in run.rows if r.ledger is not None]
    assert {e["kind"] for e in ledger} == {"removal_accepted", "removal_held", "removal_refused", "appeal_upheld",
                                           "removal_demoted"}
    for e in ledger:
        LEDGER.validate(e)

    kinds = {s["kind"] for d in decisions for s in d["signals"]}
    assert kinds >= {"trademark_text", "brand_field", "price", "seller", "brand_removal", "rescan"}
    details = {(s["kind"], k) for d in decisions for s in d["signals"] for k in s["detail"]}
    assert {("brand_removal", "held"), ("brand_removal", "suspended"), ("trademark_text", "normalisations")} <= details

    by = {(d["listing_id"], d["action"]): d for d in decisions}
    # event time and source: the listing update, or the feedback event for a removal/appeal
    flagged, removed, cleared = [d for d in decisions if d["listing_id"] == "cheap"]
    assert flagged["event_time"] == 1000 and flagged["source"] == {"topic": "listings", "partition": 0, "offset": 0}
    assert removed["signals"][0]["kind"] == "brand_removal"
    assert removed["event_time"] == 2000 and removed["source"] == {"topic": "feedback", "partition": 0, "offset": 0}
    assert by["cheap", "clear"]["source"] == {"topic": "feedback", "partition": 0, "offset": 3}
    assert by["byline", "clear"]["event_time"] == 4000 and by["byline", "clear"]["brand_id"] == "veltrix"
    # the listing now presents veltrix besides lumora: one decision each, lumora's unchanged
    status = {tuple(k): v for k, v in run.t.status}
    assert status["cream", "veltrix"]["action"] == "takedown"
    assert status["cream", "lumora"]["action"] == "review"
    assert [d["brand_id"] for lid, d in run.t.decisions if lid == "cream"] == ["lumora", "veltrix"]


def test_feedback_neighbour_and_seller_suspicion_follow_the_signal_schema():
    run = Run()
    run.batch(L(listing("a", "Veltrix cordless drill VX-4471 18V two batteries", seller="bad")))
    run.batch(F(feedback("brand_removal", "a")))
    rows = run.batch(L(listing("b", "cordless drill VX-4471 18V two batteries original", seller="s-2")),
                     L(listing("c", "Veltrex impact driver", seller="bad")))
    decisions = [orjson.loads(f.decision) for r in rows for f in r.flags]
    signals = [s for d in decisions for s in d["signals"]]
    assert {"feedback_neighbor", "seller"} <= {s["kind"] for s in signals}
    assert any(s["kind"] == "seller" and "confirmed_removals_for_brand" in s["detail"] for s in signals)
    for s in signals:
        SIGNAL.validate(s)
    for d in decisions:
        check_decision(d)


def test_image_signals_follow_the_signal_schema(extractor):
    from brand_signals.records import Action
    from tests.unit.test_image_signals import (
        BRAND,
        HOSTILE,
        CountingReader,
        _jpeg,
        _listing,
        _photo,
        _signals,
        _warped_into_photo,
    )

    photo = _photo(4)[:300]
    files = {"geo.jpg": _jpeg(_warped_into_photo(11, 20.0, 0.6, (250, 170))), "ocr.jpg": _jpeg(photo),
             "copy.jpg": _jpeg(_photo(9)), **{n: d for n, d, _r in HOSTILE if d is not None}}
    sig, _ = _signals(extractor, files, CountingReader({300: "ZORBlX original"}))
    uris = ["geo.jpg", "ocr.jpg", "copy.jpg", *(n for n, _d, _r in HOSTILE)]
    (evidence,) = sig.find([_listing("l1", *uris)])
    signals = [s for ev in evidence for s in ev.signals]
    assert {s.kind for s in signals} == {SignalKind.LOGO, SignalKind.OCR_TEXT, SignalKind.IMAGE_COPY,
                                         SignalKind.IMAGE_ERROR}
    for s in signals:
        SIGNAL.validate(s.to_json())
    # through decide(): the image errors travel with the decision
    d = decide(_listing("l1", *uris), evidence, {BRAND.brand_id: BRAND}, 5000, "zeroscan-test")
    assert d is not None and d.action is Action.TAKEDOWN
    out = d.to_json() | {"source": {"topic": "listings", "partition": 0, "offset": 7}}
    check_decision(out)
    assert sum(s["kind"] == "image_error" for s in out["signals"]) == len(HOSTILE)


@pytest.fixture(scope="module")
def extractor():
    from models.embedder import FeatureExtractor

    return FeatureExtractor(threads=1)


GOOD = {"listing_id": "l1", "seller_id": "s", "brand_id": "veltrix", "action": "takedown", "score": 0.9,
        "signals": [{"kind": "trademark_text", "score": 0.9, "detail": {
            "mark": "Veltrix", "field": "title", "matched": "Veltrix", "normalisations": []}}],
        "decided_at": 5, "brand_version": 1, "model_version": "m", "event_time": 1,
        "source": {"topic": "listings", "partition": 0, "offset": 3}}


def _signal(**detail) -> dict:
    return {**GOOD, "signals": [{**GOOD["signals"][0], "detail": {**GOOD["signals"][0]["detail"], **detail}}]}


@pytest.mark.parametrize("record,why", [
    ({k: v for k, v in GOOD.items() if k != "source"}, "no source"),
    ({k: v for k, v in GOOD.items() if k != "event_time"}, "no event time"),
    ({**GOOD, "source": {"topic": "listings", "partition": 0}}, "source without offset"),
    (_signal(field="brand"), "the brand field is kind brand_field"),
    (_signal(colour="red"), "an undocumented detail field"),
    (_signal(normalisations=["rot13"]), "an unknown normalisation"),
    ({**GOOD, "signals": [{"kind": "hunch", "score": 0.9, "detail": {}}]}, "an unknown kind"),
    ({**GOOD, "signals": [{"kind": "image_error", "score": 0.5, "detail": {"image_uri": "u", "reason": "r"}}]},
     "an image error that scores"),
    ({**GOOD, "action": "clear", "score": 0.0}, "a clear with presentation signals"),
])
def test_the_decision_schema_refuses(record, why):
    check_decision(GOOD)
    with pytest.raises(jsonschema.ValidationError):
        DECISION.validate(record)
