"""The scan operator's batch step without Flink: raw records in, decision/pass/dead rows out (and,
through the plain-Python reading of the job's transition, the decisions and clears per brand)."""
from __future__ import annotations

import json

import jsonschema
import orjson
import pytest

from brand_signals.catalog import BrandTable, Catalog, StaleVersionError
from brand_signals.contract import parse_brand
from brand_signals.scanner import Scanner
from connectors.serde import DEAD_LETTER_RECORD_BYTES, Origin, dead_letter
from brand_signals.records import Action
from pipelines.steps import Flag, RowKind, ScanContext, scan_records
from tests.unit.test_contract import SCHEMAS
from tests.unit.test_record_schemas import Transitions

pytestmark = pytest.mark.unit

DECISION_SCHEMA = json.loads((SCHEMAS / "decision.schema.json").read_text())
BRAND = {"brand_id": "veltrix", "name": "Veltrix", "trademarks": ["Veltrix"], "authorized_sellers": ["vx-store"],
         "enforcement": "takedown", "version": 3}


def catalog(*brands) -> Catalog:
    return Catalog.build([parse_brand(json.dumps(b)) for b in brands], version=1)


def rec(i, seller="s-1", title="Veltrix cordless drill 18V", **kw) -> bytes:
    return json.dumps({"listing_id": f"l{i}", "seller_id": seller, "event_time": 1000 + i, "title": title,
                       **kw}).encode()


def run(raws, cat=None, scanner=None):
    origins = [Origin("listings", 0, i) for i in range(len(raws))]
    return scan_records(raws, origins, ScanContext(cat or catalog(BRAND), scanner or Scanner("test")), now_ms=42)


def test_flagged_listing_becomes_a_contract_valid_decision():
    [row] = run([rec(1)])
    [flag] = row.flags
    assert row.kind is RowKind.DECISION and flag.brand_id == "veltrix" and flag.action is Action.TAKEDOWN
    assert row.sweep and not flag.removed and row.flagged == ("veltrix",)
    d = orjson.loads(flag.decision)
    jsonschema.validate(d, DECISION_SCHEMA)
    assert d["listing_id"] == "l1" and d["brand_version"] == 3 and d["decided_at"] == 42
    assert d["signals"][0]["kind"] in ("trademark_text", "brand_field")


def test_authorized_and_clean_listings_pass():
    rows = run([rec(1, seller="vx-store"), rec(2, title="Plain steel hammer")])
    assert [r.kind for r in rows] == [RowKind.PASS, RowKind.PASS]


def test_a_delete_clears_the_flagged_brand_with_a_valid_clear_decision():
    delete = json.dumps({"listing_id": "l1", "seller_id": "s", "event_time": 9, "op": "delete"}).encode()
    rows = run([rec(1), delete])
    assert rows[1].kind is RowKind.PASS and rows[1].sweep and rows[1].flags == ()
    assert rows[1].reason == "listing deleted" and rows[1].event_time == 9 and rows[1].decided_at == 42
    t = Transitions()
    t.feed(rows)
    (_, flagged), (_, d) = t.decisions
    jsonschema.validate(d, DECISION_SCHEMA)
    assert d["action"] == "clear" and d["brand_id"] == "veltrix" and flagged["action"] == "takedown"
    assert d["signals"][0]["detail"]["reason"] == "listing deleted"
    assert d["source"] == {"topic": "listings", "partition": 0, "offset": 1}


TWO = {"brand_id": "lumora", "name": "Lumora", "trademarks": ["Lumora"], "enforcement": "review", "version": 1}


def test_a_listing_presenting_two_brands_gets_a_decision_for_each():
    """Two brand owners each see their own signal; when the listing stops presenting one brand
    only that brand's flag is cleared; a delete clears both."""
    cat, scanner, t = catalog(BRAND, TWO), Scanner("test"), Transitions()
    both = run([rec(1, title="Veltrix drill with Lumora night cream")], cat, scanner)
    [row] = both
    assert [(f.brand_id, f.action) for f in row.flags] == [("lumora", Action.REVIEW), ("veltrix", Action.TAKEDOWN)]
    t.feed(both)
    t.feed(run([rec(1, title="Veltrix drill with Lumora night cream")], cat, scanner))   # unchanged: nothing new
    t.feed(run([rec(1, title="Veltrix drill, cordless")], cat, scanner))
    t.feed(run([json.dumps({"listing_id": "l1", "seller_id": "s-1", "event_time": 9, "op": "delete"}).encode()],
               cat, scanner))
    assert [(d["brand_id"], d["action"]) for _k, d in t.decisions] == [
        ("lumora", "review"), ("veltrix", "takedown"), ("lumora", "clear"), ("veltrix", "clear")]
    assert [k for k, _d in t.status] == [["l1", "lumora"], ["l1", "veltrix"], ["l1", "lumora"], ["l1", "veltrix"]]
    reasons = [d["signals"][0]["detail"]["reason"] for _k, d in t.decisions[2:]]
    assert reasons == ["no longer presents the brand", "listing deleted"]


def test_removal_and_appeal_touch_their_own_brand_only():
    from brand_signals.feedback.context import ContextStore
    from brand_signals.feedback.state import FeedbackState

    def fb(kind, t):
        return json.dumps({"kind": kind, "listing_id": "l1", "brand_id": "lumora", "event_time": t,
                           "actor": "owner"}).encode()

    ctx = ScanContext(catalog(BRAND, TWO), Scanner("test"), FeedbackState(), ContextStore())
    t = Transitions()
    raws = [rec(1, title="Veltrix drill with Lumora night cream"), fb("brand_removal", 5), fb("appeal_upheld", 6),
            rec(1, title="Veltrix drill with Lumora night cream")]
    streams = ["listing", "feedback", "feedback", "listing"]
    rows = scan_records(raws, [Origin("t", 0, i) for i in range(4)], ctx, 42, streams)
    assert [(f.brand_id, f.action, f.removed) for f in rows[1].flags] == [("lumora", Action.TAKEDOWN, True)]
    assert not rows[1].sweep and not rows[2].sweep and rows[2].flags == (Flag("lumora", Action.CLEAR),)
    assert [f.brand_id for f in rows[3].flags] == ["veltrix"]          # reinstated for lumora: exempt
    t.feed(rows)
    assert [(d["brand_id"], d["action"]) for _k, d in t.decisions] == [
        ("lumora", "review"), ("veltrix", "takedown"), ("lumora", "takedown"), ("lumora", "clear")]
    assert t.decisions[-1][1]["signals"][0]["detail"]["reason"] == "appeal upheld: reinstated (owner)"


@pytest.mark.parametrize("raw,reason", [
    (b"{oops", "not valid UTF-8 JSON"),
    (b'{"listing_id":"x","event_time":1,"title":"t"}', "seller_id"),
    (b'{"listing_id":"x","seller_id":"s","event_time":1,"title":"\xff"}', "UTF-8"),
    (None, "empty record"),
])
def test_bad_records_become_dead_letters_and_the_batch_goes_on(raw, reason):
    rows = run([rec(1), raw, rec(2, title="Plain steel hammer")])
    assert [r.kind for r in rows] == [RowKind.DECISION, RowKind.DEAD, RowKind.PASS]
    dl = orjson.loads(rows[1].payload)
    assert reason in dl["reason"]
    assert dl["origin"] == {"topic": "listings", "partition": 0, "offset": 1}


def test_dead_letter_keeps_id_when_known():
    [row] = run([b'{"listing_id":"x9","seller_id":"s","event_time":-4,"title":"t"}'])
    assert row.listing_id == "x9" and orjson.loads(row.payload)["listing_id"] == "x9"


def test_dead_letter_bounds_huge_and_binary_records():
    huge = b"x" * (DEAD_LETTER_RECORD_BYTES * 3)
    d = orjson.loads(dead_letter("too big", huge, Origin("f.jsonl"), 1))
    assert d["record_truncated"] and d["record_bytes"] == len(huge) and len(d["record"]) == DEAD_LETTER_RECORD_BYTES
    assert d["origin"] == {"file": "f.jsonl"}
    b = orjson.loads(dead_letter("bad", b"\xff\xfe", Origin("t", 1, 2), 1))
    assert b["record_base64"] == "//4="


def test_unchanged_repost_is_served_from_the_memo():
    scanner = Scanner("test")
    cat = catalog(BRAND)
    run([rec(1)], cat, scanner)
    rows = run([rec(1, seller="s-2", price={"amount": 3, "currency": "USD"})], cat, scanner)
    assert scanner.memo_hits == 1 and scanner.memo_misses == 1
    assert rows[0].kind is RowKind.DECISION


def test_memo_is_dropped_when_the_catalogue_changes():
    scanner = Scanner("test")
    run([rec(1)], catalog(BRAND), scanner)
    other = {**BRAND, "brand_id": "lumora", "name": "Lumora", "trademarks": ["Lumora"]}
    withdrawn = Catalog.build([parse_brand(json.dumps(other))], version=2)
    [row] = run([rec(1)], withdrawn, scanner)
    assert row.kind is RowKind.PASS and scanner.memo_misses == 2


def test_empty_catalogue_flags_nothing():
    [row] = run([rec(1)], Catalog.build([], version=1))
    assert row.kind is RowKind.PASS


def test_brand_table_refuses_old_versions_and_honours_tombstones():
    t = BrandTable()
    t.apply(parse_brand(json.dumps(BRAND)))
    with pytest.raises(StaleVersionError):
        t.apply(parse_brand(json.dumps({**BRAND, "version": 2})))
    t.apply(parse_brand(json.dumps({"brand_id": "veltrix", "deleted": True, "version": 4})))
    assert t.live() == []
    with pytest.raises(StaleVersionError):
        t.apply(parse_brand(json.dumps({**BRAND, "version": 4})))


def test_feedback_is_judged_after_the_listings_before_it_in_the_same_batch():
    from brand_signals.feedback.context import ContextStore
    from brand_signals.feedback.state import FeedbackState

    removal = json.dumps({"kind": "brand_removal", "listing_id": "l1", "brand_id": "veltrix", "event_time": 5,
                          "actor": "owner"}).encode()
    ctx = ScanContext(catalog(BRAND), Scanner("test"), FeedbackState(), ContextStore())
    rows = scan_records([rec(1), removal], [Origin("t", 0, 0), Origin("f", 0, 0)], ctx, 42, ["listing", "feedback"])
    [flag] = rows[1].flags
    assert rows[1].kind is RowKind.DECISION and flag.action is Action.TAKEDOWN and flag.removed


def test_feedback_is_judged_on_the_latest_update_given_beside_it():
    """The job's path: no context store, the listing's latest update comes with the event (from
    the job's keyed state) and is matched again."""
    from brand_signals.feedback.state import FeedbackState

    def removal(lid):
        return json.dumps({"kind": "brand_removal", "listing_id": lid, "brand_id": "veltrix", "event_time": 5,
                           "actor": "owner"}).encode()

    ctx = ScanContext(catalog(BRAND), Scanner("test"), FeedbackState())
    plain = rec(2, title="cordless drill 18V")
    broken = json.dumps({"listing_id": "l3", "seller_id": "s-1", "event_time": 3, "title": "Veltrix",
                         "price": {"amount": -1, "currency": "USD"}}).encode()
    other = b'{"listing_id": "l5", "listing_id": "l1", "seller_id": "s-1", "event_time": 3, "title": "Veltrix"}'
    rows = scan_records([removal("l1"), removal("l2"), removal("l3"), removal("l4"), removal("l5")],
                        [Origin("f", 0, i) for i in range(5)], ctx, 42, ["feedback"] * 5,
                        [rec(1).decode(), plain, broken, None, other])
    led = [json.loads(r.ledger) for r in rows]
    assert rows[0].kind is RowKind.DECISION
    assert [(f.brand_id, f.action, f.removed) for f in rows[0].flags] == [("veltrix", Action.TAKEDOWN, True)]
    assert led[0]["kind"] == "removal_accepted" and led[0]["seller_id"] == "s-1"
    assert led[1]["kind"] == "removal_refused" and led[1]["refusal"] == "not_presented"
    # its latest update broke the contract, never seen, or read as another listing: held for review
    assert [e["kind"] for e in led[2:]] == ["removal_held"] * 3


@pytest.mark.parametrize("value,ocr,upscale", [(None, True, False), ("on", True, False), ("off", False, False),
                                               ("upscale", True, True)])
def test_image_settings_from_the_environment(monkeypatch, tmp_path, value, ocr, upscale):
    from pipelines.scanner_job import image_config
    from zeroscan.settings import Settings

    monkeypatch.setenv("ZEROSCAN_STATE_DIR", str(tmp_path))
    if value is None:
        monkeypatch.delenv("ZEROSCAN_IMAGE_OCR", raising=False)
    else:
        monkeypatch.setenv("ZEROSCAN_IMAGE_OCR", value)
    cfg = image_config(Settings.from_env())
    assert (cfg.ocr, cfg.ocr_upscale) == (ocr, upscale)
    assert cfg.cache_dir == str(tmp_path.resolve() / "image-cache")


def test_unknown_image_ocr_setting_is_refused(monkeypatch):
    from pipelines.scanner_job import image_config
    from zeroscan.settings import Settings

    monkeypatch.setenv("ZEROSCAN_IMAGE_OCR", "yes")
    with pytest.raises(ValueError, match="on, off or upscale"):
        image_config(Settings.from_env())


def test_scan_rows_convert_to_the_udf_s_declared_arrow_type():
    """What Flink's Arrow coder does with the pandas UDF's frame (no JVM): every column typed as
    SCAN_RESULT declares it (a pandas UDF takes no array of rows, so flags are maps by brand)."""
    import pyarrow as pa
    from pyflink.table.types import to_arrow_type
    from pyflink.table.utils import pandas_to_arrow

    from brand_signals.feedback.context import ContextStore
    from brand_signals.feedback.state import FeedbackState
    from pipelines.operators import SCAN_RESULT, result_frame

    ctx = ScanContext(catalog(BRAND, TWO), Scanner("test"), FeedbackState(), ContextStore())
    appeal = json.dumps({"kind": "appeal_upheld", "listing_id": "l1", "brand_id": "lumora", "event_time": 7}).encode()
    rows = scan_records([rec(1, title="Veltrix drill with Lumora night cream"), b"{bad", appeal, rec(2, title="hammer")],
                        [Origin("listings", 0, 0), Origin("f.jsonl", line=2), Origin("feedback", 1, 9),
                         Origin("listings", 3, 2 ** 40)], ctx, 42, ["listing", "listing", "feedback", "listing"])
    batch = pandas_to_arrow(pa.schema([pa.field("r", to_arrow_type(SCAN_RESULT))]), "UTC", [SCAN_RESULT],
                            [result_frame(rows)])
    flagged, dead, cleared, clean = (r["r"] for r in batch.to_pylist())
    assert flagged["brands"] == [None, "lumora", "veltrix"] and flagged["flagged"] == ["lumora", "veltrix"]
    assert dict(flagged["actions"]) == {"lumora": "review", "veltrix": "takedown"}
    assert dict(flagged["removed"]) == {"lumora": False, "veltrix": False}
    assert orjson.loads(dict(flagged["decisions"])["veltrix"])["brand_id"] == "veltrix"
    assert (flagged["src_topic"], flagged["src_partition"], flagged["src_offset"]) == ("listings", 0, 0)
    assert dead["kind"] == "dead" and "not valid UTF-8 JSON" in dead["dead"] and dead["brands"] == []
    assert cleared["brands"] == ["lumora"] and dict(cleared["actions"]) == {"lumora": "clear"}
    assert cleared["decisions"] == [("lumora", None)] and cleared["reason"].startswith("appeal upheld")
    assert clean["brands"] == [None] and clean["src_offset"] == 2 ** 40 and clean["event_time"] == 1002
    # a listing scan's whole per-brand state in one key; a feedback record states one brand: none
    assert flagged["state_key"] == "lumora\treview\t0\nveltrix\ttakedown\t0"
    assert clean["state_key"] == "" and cleared["state_key"] is None and dead["state_key"] is None


def test_a_record_whose_listing_id_the_keyed_step_read_otherwise_is_refused():
    """The job passes the listing_id its keyed steps read (None: their parser refused the
    record). A listing update or rescan the scan reads as another listing is dead-lettered, not
    scanned: its listing's other updates are ordered and compared under that key."""
    deep = rec(1)[:-1] + b',"z":' + b"[" * 1010 + b"]" * 1010 + b"}"
    raws = [rec(0), deep, rec(2), rec(3)]
    origins = [Origin("listings", 0, i) for i in range(len(raws))]
    rows = scan_records(raws, origins, ScanContext(catalog(BRAND), Scanner("test")), now_ms=42,
                        keys=["l0", None, "l2", "another"])
    assert [r.kind for r in rows] == [RowKind.DECISION, RowKind.DEAD, RowKind.DECISION, RowKind.DEAD]
    reason = json.loads(rows[1].payload)["reason"]
    assert "listing_id reads apart" in reason and "could not read" in reason
    assert "'another'" in json.loads(rows[3].payload)["reason"]
    # without keys (the scan alone, as in the benchmarks), the record is scanned
    assert run([deep])[0].kind is RowKind.DECISION


def test_scores_are_written_as_round_to_four_digits_would_write_them():
    import math
    import random

    from brand_signals import records
    rng = random.Random(7)
    values = [0.0, -0.0, -0.25, 1.0, 0.95, 0.7 * 0.85, 1 / 3, 0.00005, 0.99995, 123.456789,
              math.inf, -math.inf, math.nan, 0, 1, 2, -3] + [rng.random() for _ in range(3 * records._ROUND4_MAX)]
    for _ in range(2):   # the second time from what was remembered (past the cap: after a clear)
        for x in values:
            got, want = records.round4(x), round(x, 4)
            assert orjson.dumps(got) == orjson.dumps(want) and type(got) is type(want), x
            assert math.copysign(1, got) == math.copysign(1, want) or math.isnan(want)
    assert len(records._ROUND4) <= records._ROUND4_MAX


@pytest.mark.parametrize("rescan", [None, {"brand_id": "b1", "brand_version": 2, "reason": "brand changed"}])
def test_a_flag_writes_what_the_decision_with_its_source_writes(rescan):
    import dataclasses

    from connectors.serde import decision_json
    from pipelines.steps import _flag
    from brand_signals.contract import listing_from_obj
    other = {**BRAND, "brand_id": "norvex", "name": "Norvex", "trademarks": ["Norvex"]}
    listing = listing_from_obj(json.loads(rec(9, title="Veltrix drill with Norvex battery", brand="Veltrix")))
    decided = Scanner("test").scan_all(catalog(BRAND, other), [listing], 1)[0]
    assert len(decided) == 2
    origin = Origin("listings", 3, 41)
    for d in decided:
        flag = _flag(d, origin, rescan)
        assert flag.decision == decision_json(dataclasses.replace(d, source=origin.to_json(), rescan=rescan))
        # a decision that already names a source (or a re-check) is written as the copy writes it
        again = dataclasses.replace(d, source={"file": "x.jsonl"})
        assert _flag(again, origin, rescan).decision == flag.decision
        own = dataclasses.replace(d, rescan={"brand_id": "b0", "brand_version": 1, "reason": "older"})
        assert _flag(own, origin, rescan).decision == decision_json(
            dataclasses.replace(own, source=origin.to_json(), rescan=rescan))


def test_quiet_is_a_listing_update_no_source_found_evidence_in():
    """`quiet` (the job's price loop writes a verdict from it): only a listing update in which no
    source found anything for any brand, so its price could not have changed its decision; not
    one that presents a brand from an authorized seller, nor a weak presentation a price under the
    floor would make a takedown, a delete or a dead letter."""
    floor = {**BRAND, "min_price": {"amount": 100, "currency": "USD"}}
    price = {"price": {"amount": 150, "currency": "USD"}}
    raws = [rec(1, title="Leather bag", **price), rec(2, seller="vx-store", **price),
            rec(3, title="Veltrlx cordless drill", **price), rec(4, title="Cordless drill", description="Fits Veltrix batteries"),
            json.dumps({"listing_id": "l5", "seller_id": "s-1", "event_time": 5, "op": "delete"}).encode(),
            rec(6, title="Leather bag", price={"amount": -1, "currency": "USD"})]
    rows = run(raws, cat=catalog(floor))
    assert [r.quiet for r in rows] == [True, False, False, True, False, False]
    assert [r.kind for r in rows] == [RowKind.PASS, RowKind.PASS, RowKind.DECISION, RowKind.PASS, RowKind.PASS,
                                      RowKind.DEAD]
