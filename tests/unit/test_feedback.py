"""The feedback loop as plain Python with an injected clock: removals (accepted, refused with
the reason and counted, held under a daily cap), near-duplicates only on specific evidence
(rare shared words, image bytes the scanner hashed, not stock photos), seller suspicion,
appeals, the rolling accuracy window, suspension and recovery."""
from __future__ import annotations

import json

import pytest

from brand_signals.catalog import Catalog
from brand_signals.contract import parse_brand, parse_listing
from brand_signals.feedback.context import ContextStore, ListingContext
from brand_signals.feedback.fingerprints import fingerprint
from brand_signals.feedback.ledger import LedgerEvent, LedgerKind, Refusal
from brand_signals.feedback.state import DAY_MS, FeedbackPolicy, FeedbackState, handle_feedback
from brand_signals.records import Action, FeedbackEvent, FeedbackKind, SignalKind
from brand_signals.scanner import Scanner

pytestmark = pytest.mark.unit

BRANDS = {b["brand_id"]: parse_brand(json.dumps(b)) for b in [
    {"brand_id": "veltrix", "name": "Veltrix", "trademarks": ["Veltrix"], "enforcement": "takedown", "version": 1},
    {"brand_id": "lumora", "name": "Lumora", "trademarks": ["Lumora"], "enforcement": "review", "version": 1},
]}
T0 = 1_750_000_000_000


def listing(lid: str, title: str, seller: str = "s-1", **kw):
    return parse_listing(json.dumps({"listing_id": lid, "seller_id": seller, "event_time": T0, "title": title, **kw}))


def ctx(lid: str, title: str, presented=("veltrix",), seller: str = "s-1") -> ListingContext:
    return ListingContext(lid, seller, frozenset(presented), fingerprint(listing(lid, title, seller)))


def fb(kind: FeedbackKind, lid: str, brand: str = "veltrix", t: int = T0, actor: str = "owner") -> FeedbackEvent:
    return FeedbackEvent(kind, lid, brand, t, actor)


def remove(state: FeedbackState, lid: str, title: str, brand="veltrix", t=T0, presented=("veltrix",)):
    d, led = handle_feedback(fb(FeedbackKind.BRAND_REMOVAL, lid, brand, t), ctx(lid, title, presented), state,
                             BRANDS, now_ms=t)
    state.apply(led)
    return d, led


def test_accepted_removal_is_a_takedown_with_brand_removal_evidence():
    state = FeedbackState()
    d, led = remove(state, "a", "Veltrix cordless drill 18V two batteries")
    assert d.action is Action.TAKEDOWN and d.brand_id == "veltrix"
    assert d.signals[0].kind is SignalKind.BRAND_REMOVAL
    assert led.kind is LedgerKind.REMOVAL_ACCEPTED


@pytest.mark.parametrize("context, brand, expected, reason", [
    (None, "veltrix", LedgerKind.REMOVAL_HELD, "listing never seen: a human decides"),
    ("other", "veltrix", LedgerKind.REMOVAL_REFUSED, "listing presents only another brand"),
    ("nothing", "veltrix", LedgerKind.REMOVAL_REFUSED, "listing seen presenting no brand at all"),
    ("own", "nobody", LedgerKind.REMOVAL_REFUSED, "brand not registered"),
])
def test_removals_that_are_not_accepted(context, brand, expected, reason):
    state = FeedbackState()
    c = {None: None, "other": ctx("a", "Lumora cream", ("lumora",)), "own": ctx("a", "Veltrix drill"),
         "nothing": ctx("a", "case for Veltrix drills", ())}[context]
    d, led = handle_feedback(fb(FeedbackKind.BRAND_REMOVAL, "a", brand), c, state, BRANDS, now_ms=T0)
    assert led.kind is expected, reason
    if expected is LedgerKind.REMOVAL_HELD:
        assert d.action is Action.REVIEW
    else:
        assert d is None and led.reason and led.refusal is not None
    assert LedgerEvent.from_json(led.to_json()) == led


def test_refused_removal_counts_against_the_brand_and_unseen_ones_are_capped():
    state = FeedbackState(FeedbackPolicy(max_held_per_day=2))
    for i in range(5):  # five removals of listings the scanner saw without the brand
        _d, led = handle_feedback(fb(FeedbackKind.BRAND_REMOVAL, f"n{i}", t=T0 + i),
                                  ctx(f"n{i}", "case for Veltrix drills", ()), state, BRANDS, now_ms=T0 + i)
        assert led.refusal is Refusal.NOT_PRESENTED and "presents nothing of any brand" in led.reason
        state.apply(led)
    assert state.accuracy("veltrix", T0 + 10) == (0.0, 5) and state.suspended("veltrix", T0 + 10)
    got = []
    for i in range(3):  # unseen listings: two held, then refused for the day
        d, led = handle_feedback(fb(FeedbackKind.BRAND_REMOVAL, f"u{i}", t=T0 + 20 + i), None, state, BRANDS,
                                 now_ms=T0)
        state.apply(led)
        got.append((led.kind, d is not None))
    assert got == [(LedgerKind.REMOVAL_HELD, True)] * 2 + [(LedgerKind.REMOVAL_REFUSED, False)]
    assert led.refusal is Refusal.HELD_CAP and "2 removals of unseen listings" in led.reason
    _d, led = handle_feedback(fb(FeedbackKind.BRAND_REMOVAL, "u9", t=T0 + DAY_MS), None, state, BRANDS, now_ms=T0)
    assert led.kind is LedgerKind.REMOVAL_HELD  # a new day
    assert state.accuracy("veltrix", T0 + 10)[1] == 5  # refusals over the cap do not count against it


def test_generic_words_are_not_a_neighbour():
    """The abuse: one accepted removal must not take down another seller's honest listing that
    shares only category words (plain Jaccard 0.78)."""
    state = FeedbackState()
    remove(state, "a", "Veltrix Wireless Bluetooth Headphones Black Over Ear Foldable")
    b = listing("b", "Wireless Bluetooth Headphones Black Over Ear Foldable", seller="s-9")
    assert state.evidence(b, fingerprint(b), presented=()) == []


def test_a_claimed_digest_and_a_stock_photo_are_not_neighbours():
    state = FeedbackState(FeedbackPolicy(stock_image_sellers=3))
    sha, stock = "ab" * 32, "cd" * 32
    d, led = handle_feedback(fb(FeedbackKind.BRAND_REMOVAL, "a"), ListingContext(
        "a", "s-1", frozenset({"veltrix"}), fingerprint(listing("a", "x"), [sha, stock])), state, BRANDS, now_ms=T0)
    state.apply(led)
    claim = listing("b", "Completely different words", images=[{"uri": "j.jpg", "sha256": sha}])
    assert state.evidence(claim, fingerprint(claim), presented=()) == []  # only claimed, never hashed here
    for seller in ("s-1", "s-2", "s-3"):
        state.observe_images(seller, [stock])
    assert state.is_stock_image(stock) and not state.is_stock_image(sha)
    c = listing("c", "Completely different words")
    assert state.evidence(c, fingerprint(c, [stock]), presented=()) == []
    [e] = state.evidence(c, fingerprint(c, [sha]), presented=())
    assert e.signals[0].detail["via"] == "image"


@pytest.mark.parametrize("title, found, reason", [
    ("Veltrix cordless drill 18V two batteries", True, "identical title"),
    ("Veltrix cordless drill 18V two batteries NEW", True, "one word added"),
    ("Veltrix cordless drill 18V 2 batteries", True, "one word changed"),
    ("Garden hose 30m green", False, "unrelated listing"),
])
def test_near_duplicates_of_a_removed_listing(title, found, reason):
    state = FeedbackState()
    remove(state, "a", "Veltrix cordless drill 18V two batteries")
    b = listing("b", title, seller="s-9")
    ev = state.evidence(b, fingerprint(b), presented=())
    got = [e for e in ev if any(s.kind is SignalKind.FEEDBACK_NEIGHBOR for s in e.signals)]
    assert bool(got) == found, reason
    if found:
        assert got[0].brand_id == "veltrix" and got[0].signals[0].detail["removed_listing_id"] == "a"


def test_same_image_is_a_neighbour_even_with_another_title():
    state = FeedbackState()
    sha = "ab" * 32
    d, led = handle_feedback(fb(FeedbackKind.BRAND_REMOVAL, "a"), ListingContext(
        "a", "s-1", frozenset({"veltrix"}), fingerprint(listing("a", "x"), [sha])), state, BRANDS, now_ms=T0)
    state.apply(led)
    b = listing("b", "Completely different words")
    [e] = state.evidence(b, fingerprint(b, [sha]), presented=())  # the same bytes, hashed by the scanner
    assert e.signals[0].detail["via"] == "image"


def test_scanner_flags_neighbour_and_raises_suspicion_on_the_seller():
    cat = Catalog.build(BRANDS.values(), version=1)
    state, contexts, scanner = FeedbackState(), ContextStore(), Scanner("t")
    first = listing("a", "Veltrix cordless drill VX-4471 18V two batteries", seller="bad-seller")
    scanner.scan(cat, [first], T0, state, contexts)
    d, led = handle_feedback(fb(FeedbackKind.BRAND_REMOVAL, "a"), contexts.get("a"), state, cat.brands, T0)
    state.apply(led)
    # a lightly edited copy by another seller, with no mark at all in it, but its model number
    copy = listing("b", "cordless drill VX-4471 18V two batteries original", seller="s-2")
    [dec] = scanner.scan(cat, [copy], T0, state, contexts)
    assert dec is not None and dec.brand_id == "veltrix"
    assert SignalKind.FEEDBACK_NEIGHBOR in {s.kind for s in dec.signals}
    # the scanner remembered that the copy presented nothing: a removal of it would be refused
    assert contexts.get("b").presented == frozenset()
    # the same seller's weak (misspelt) mention of the brand gets raised suspicion
    weak = listing("c", "Veltrex impact driver", seller="bad-seller")
    [dec] = scanner.scan(cat, [weak], T0, state, contexts)
    assert dec.action is Action.TAKEDOWN and SignalKind.SELLER in {s.kind for s in dec.signals if s.score > 0}


def test_appeal_upheld_reinstates_withdraws_evidence_and_exempts():
    state = FeedbackState()
    remove(state, "a", "Veltrix cordless drill 18V two batteries")
    d, led = handle_feedback(fb(FeedbackKind.APPEAL_UPHELD, "a", actor="reviewer"), None, state, BRANDS, T0 + 1)
    state.apply(led)
    assert d.action is Action.CLEAR
    b = listing("b", "Veltrix cordless drill 18V two batteries")
    assert not any(s.kind is SignalKind.FEEDBACK_NEIGHBOR for e in state.evidence(b, fingerprint(b), ())
                   for s in e.signals)
    assert state.is_exempt("a", "veltrix")


def test_ledger_replay_is_idempotent():
    state = FeedbackState()
    _, led = remove(state, "a", "Veltrix drill")
    assert state.apply(led) is False
    assert state.count("veltrix", LedgerKind.REMOVAL_ACCEPTED) == 1
    again = LedgerEvent.from_json(json.loads(json.dumps(led.to_json())))
    assert again == led and state.apply(again) is False


def _appeal(state, lid, upheld: bool, t):
    kind = FeedbackKind.APPEAL_UPHELD if upheld else FeedbackKind.APPEAL_REJECTED
    _, led = handle_feedback(fb(kind, lid, t=t, actor="reviewer"), None, state, BRANDS, t)
    state.apply(led)


def test_accuracy_window_suspension_and_recovery():
    policy = FeedbackPolicy(accuracy_bar=0.9, window_ms=90 * DAY_MS, min_decided=5)
    state = FeedbackState(policy)
    for i in range(6):
        remove(state, f"r{i}", f"Veltrix drill {i}", t=T0 + i)
    for i in range(3):
        _appeal(state, f"r{i}", upheld=True, t=T0 + 10 + i)
    for i in range(3, 6):
        _appeal(state, f"r{i}", upheld=False, t=T0 + 10 + i)
    assert state.accuracy("veltrix", T0 + 100) == (0.5, 6)
    assert state.suspended("veltrix", T0 + 100)
    # while suspended, a removal becomes a review and is recorded as demoted
    d, led = remove(state, "n1", "Veltrix drill new", t=T0 + 200)
    assert d.action is Action.REVIEW and led.kind is LedgerKind.REMOVAL_DEMOTED
    assert d.signals[0].detail["suspended"] is True
    # the overturned appeals age out of the 90-day window; newer confirmations restore it
    later = T0 + 91 * DAY_MS
    for i in range(5):
        remove(state, f"m{i}", f"Veltrix drill later {i}", t=later + i)
        _appeal(state, f"m{i}", upheld=False, t=later + 10 + i)
    assert state.accuracy("veltrix", later + 100) == (1.0, 5)
    assert not state.suspended("veltrix", later + 100)
    d, _ = remove(state, "n2", "Veltrix drill newest", t=later + 200)
    assert d.action is Action.TAKEDOWN


def test_a_few_decided_removals_do_not_suspend():
    state = FeedbackState(FeedbackPolicy(min_decided=5))
    remove(state, "r0", "Veltrix drill")
    _appeal(state, "r0", upheld=True, t=T0 + 1)
    assert state.accuracy("veltrix", T0 + 2) == (0.0, 1) and not state.suspended("veltrix", T0 + 2)


def test_standing_changes_are_announced_once_each_way():
    from pipelines.steps import ScanContext, scan_records
    from connectors.serde import Origin

    state = FeedbackState(FeedbackPolicy(min_decided=2))
    cat = Catalog.build(BRANDS.values(), version=1)
    ctx = ScanContext(cat, Scanner("t"), state, ContextStore())

    def send(kind, lid, t):
        raw = json.dumps({"kind": kind, "listing_id": lid, "brand_id": "veltrix", "event_time": t,
                          "actor": "x"}).encode()
        [row] = scan_records([raw], [Origin("f", 0, 0)], ctx, t, ["feedback"])
        return json.loads(row.ledger).get("brand_status", "")

    for i in range(3):
        remove(state, f"r{i}", f"Veltrix drill {i}", t=T0 + i)
    assert [send("appeal_upheld", f"r{i}", T0 + 10 + i) for i in range(3)] == ["", "suspended", ""]
    assert state.status_changes("veltrix") == [(T0 + 11, "suspended")]
    later = T0 + 91 * DAY_MS  # the overturned removals age out of the window
    assert send("appeal_rejected", "r0", later) == "reinstated"


def test_open_signals_follow_the_latest_decision_per_listing_and_brand():
    from connectors.feedback_io import _OpenSignals

    idx = _OpenSignals()
    for lid, brand, action in [("l1", "veltrix", "takedown"), ("l2", "veltrix", "review"),
                               ("l1", "lumora", "review"),      # flagged for a second brand: both open
                               ("l2", "veltrix", "clear"), ("l3", "lumora", "notify"), ("l3", "lumora", "clear")]:
        idx.apply(json.dumps({"listing_id": lid, "brand_id": brand, "action": action}).encode())
    assert list(idx.by_brand["veltrix"]) == ["l1"]
    assert list(idx.by_brand["lumora"]) == ["l1"]
    idx.apply(json.dumps({"listing_id": "l1", "brand_id": "lumora", "action": "clear"}).encode())
    assert list(idx.by_brand["veltrix"]) == ["l1"] and idx.by_brand["lumora"] == {}


def test_a_listing_confirmed_again_for_another_brand_leaves_no_stale_evidence():
    state = FeedbackState()
    remove(state, "a", "Veltrix cordless drill 18V two batteries")
    remove(state, "a", "Lumora night cream 50ml", brand="lumora", t=T0 + 1, presented=("lumora",))
    b = listing("b", "Veltrix cordless drill 18V two batteries", seller="s-9")
    assert not any(s.kind is SignalKind.FEEDBACK_NEIGHBOR for e in state.evidence(b, fingerprint(b), ())
                   for s in e.signals)


def test_ledger_events_follow_the_documented_schema():
    from pathlib import Path

    import jsonschema

    schema = json.loads((Path(__file__).resolve().parents[2] / "brand_signals" / "schemas" / "project"
                         / "feedback-ledger.schema.json").read_text())
    state = FeedbackState()
    _d, accepted = remove(state, "a", "Veltrix cordless drill VX-4471")
    _d, refused = handle_feedback(FeedbackEvent(FeedbackKind.BRAND_REMOVAL, "b", "veltrix", T0, "owner", "fake"),
                                  ctx("b", "case for drills", ()), state, BRANDS, now_ms=T0 + 5)
    for led in (accepted, refused):
        jsonschema.validate(led.to_json(), schema)
    assert refused.to_json() | {} == {**refused.to_json(), "actor": "owner", "actor_reason": "fake",
                                      "judged_at": T0 + 5, "refusal": "not_presented"}


def _fingerprint_as_specified(listing, image_digests=()):
    """The fingerprint's words as written before its fast path: NFKC, case fold, the word
    pattern, at most MAX_FINGERPRINT_TOKENS words, each hashed and rated."""
    import unicodedata

    from brand_signals.feedback import fingerprints as fps

    text = unicodedata.normalize("NFKC", f"{listing.title} {listing.brand}").casefold()
    shingles, rarity = set(), {}
    for t in fps._TOKEN.findall(text)[:fps.MAX_FINGERPRINT_TOKENS]:
        s = fps._shingle(t)
        shingles.add(s)
        if fps.word_rarity(t) > 0:
            rarity[s] = fps.word_rarity(t)
    return fps.Fingerprint(frozenset(shingles), frozenset(image_digests), rarity)


def test_the_fingerprint_is_the_specified_one_and_its_word_memory_is_bounded(monkeypatch):
    """ASCII titles take the lower-case path, others NFKC and case folding: the same
    fingerprint either way, on the bench's generated titles and on titles where the two differ
    (full-width letters, ligatures, the German sharp s, Turkish dotted I, Greek final sigma,
    combining marks, digits of other scripts, underscores, 300 words); the memory of words is
    emptied when full, and the answers stay the same."""
    import random

    import orjson

    from benchmarks.traffic import Traffic, brand_records
    from brand_signals.contract import listing_from_obj
    from brand_signals.feedback import fingerprints as fps

    titles = ["ＶＥＬＴＲＩＸ Ｐｒｏ", "ﬁne Straße", "İstanbul ΣΟΦΟΣ σοφος", "Cafe\u0301 café CAFÉ", "١٢٣ ४५६ 123",
              "snake_case-Word  tabs\tand\nlines", " ".join(f"w{i}" for i in range(300)), "", "Ǆemal ǅ ǆ",
              "ＡＢＣ_ｄｅｆ", "MiXeD CaSe ASCII only", "ẞ capital sharp s", "ℌ𝔢𝔩𝔩𝔬 mathematical"]
    traffic = Traffic(brand_records(100))
    traffic.warm(300)
    records = [orjson.loads(x) for x in traffic.lines(300)]
    rng = random.Random(5)
    records += [{"listing_id": f"u{i}", "seller_id": "s", "title": t, "brand": rng.choice(["", "ACME", "Ａｃｍｅ"]),
                 "price": {"amount": 1, "currency": "USD"}, "event_time": 1} for i, t in enumerate(titles)]
    listings = [listing_from_obj(r) for r in records]
    for listing in listings:
        assert fingerprint(listing, ("d1",)) == _fingerprint_as_specified(listing, ("d1",)), listing.title
    monkeypatch.setattr(fps, "MAX_REMEMBERED_WORDS", 50)
    fps._WORDS.clear()
    for listing in listings:
        assert fingerprint(listing) == _fingerprint_as_specified(listing)
        assert len(fps._WORDS) <= 50
