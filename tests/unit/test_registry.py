"""Brand registry: contract validation with clear errors, version ordering, ownership, tombstones,
publish-then-persist, persistence across reopen and several writers at once (SQLite in a temp
folder), and verification: owners' submissions pending until an operator approves them, with
the vetting reasons, privileges granted by the operator, the audit trail."""
from __future__ import annotations

import pytest
from prometheus_client import generate_latest

from brand_signals.catalog import StaleVersionError
from brand_signals.contract import ContractError, parse_brand
from brand_signals.records import Action, BrandReference
from brand_signals.registry import (
    ADMIN_OWNER,
    Actor,
    AlreadyWithdrawnError,
    BrandNotFoundError,
    BrandRegistry,
    ChangeKind,
    NotOwnerError,
    PublishFailedError,
    NotPendingError,
    Privilege,
    Status,
)
from brand_signals.vetting import concerns
from tests.unit.test_contract import edited

pytestmark = pytest.mark.unit

ALICE = Actor.account("alice")
BOB = Actor.account("bob")
ADMIN = Actor.admin()


class RecordingPublisher:
    def __init__(self) -> None:
        self.sent: list[BrandReference] = []
        self.fail: Exception | None = None

    def __call__(self, brand: BrandReference) -> None:
        if self.fail is not None:
            raise self.fail
        self.sent.append(brand)


def B(**kw):
    return edited({"brand_id": "acme", "version": 1, "name": "Acme", "trademarks": ["ACME"]}, **kw)


@pytest.fixture
def pub():
    return RecordingPublisher()


# A stand-in word-frequency table (Zipf values as wordfreq gives them for English), so the rules
# are tested without loading the real lists; tests/unit/test_vetting.py checks the real ones.
ZIPF = {"wireless": 4.2, "earbuds": 3.06, "phone": 5.5, "case": 5.3, "acme": 2.9}


def vet(brand, others):
    return concerns(brand, others, zipf=lambda w: (ZIPF.get(w, 0.0), "en"))


@pytest.fixture
def reg(tmp_path, pub):
    r = BrandRegistry(tmp_path / "registry", pub, now_ms=lambda: 1_700_000_000_000, vet=vet)
    yield r
    r.close()


VALIDATION = [
    # (record, error fragment or None, reason)
    (B(), None, "minimal brand: id, version, name, one mark"),
    (B(logos=[{"uri": "file:///x/logo.png", "sha256": "a" * 64}], enforcement="takedown",
       authorized_sellers=["s1"], categories=["electronics"], min_price={"amount": 10, "currency": "USD"}),
     None, "every optional field"),
    (B(brand_id="a" * 64), None, "64-character id is the cap"),
    (B(brand_id=...), "brand_id", "missing id"),
    (B(brand_id="Acme"), "brand_id", "upper case id"),
    (B(brand_id="-acme"), "brand_id", "id starts with a dash"),
    (B(brand_id="a" * 65), "brand_id", "65-character id"),
    (B(version=0), "version", "version starts at 1"),
    (B(version="2"), "version", "version as a string"),
    (B(version=True), "version", "boolean is not a version"),
    (B(name=...), "name", "name required for a live brand"),
    (B(name=""), "name", "empty name"),
    (B(trademarks=[]), "trademarks", "at least one mark"),
    (B(trademarks=...), "trademarks", "marks required for a live brand"),
    (B(trademarks=["x" * 201]), "trademarks", "mark longer than 200"),
    (B(enforcement="delete"), "enforcement", "unknown enforcement"),
    (B(logos=[{"uri": ""}]), "logos", "empty logo uri"),
    (B(logos=[{"uri": "a.png", "sha256": "XYZ"}]), "sha256", "malformed logo sha256"),
    (B(min_price={"amount": -1, "currency": "USD"}), "min_price", "negative minimum price"),
    (B(deleted="yes"), "deleted", "deleted must be a boolean"),
]


@pytest.mark.parametrize("obj,fragment,reason", VALIDATION, ids=[r for *_, r in VALIDATION])
def test_validation(reg, pub, obj, fragment, reason):
    if fragment is None:
        change = reg.put_obj(obj, ADMIN)
        assert change.kind is ChangeKind.REGISTERED and pub.sent == [change.entry.brand]
    else:
        with pytest.raises(ContractError, match=fragment):
            reg.put_obj(obj, ALICE)
        assert pub.sent == [] and list(reg.entries(include_withdrawn=True)) == []


def test_versions_must_increase(reg, pub):
    assert reg.put_obj(B(version=2), ADMIN).kind is ChangeKind.REGISTERED
    for v in (1, 2):
        with pytest.raises(StaleVersionError,
                           match=f"version {v} is not newer than the registered version 2; send version 3"):
            reg.put_obj(B(version=v, name="Old"), ADMIN)
    change = reg.put_obj(B(version=5, enforcement="review"), ADMIN)
    assert change.kind is ChangeKind.UPDATED
    assert reg.get("acme").brand.version == 5 and reg.get("acme").brand.enforcement is Action.REVIEW
    assert [b.version for b in pub.sent] == [2, 5]


def test_withdraw_and_reregister(reg, pub):
    reg.put_obj(B(version=3), ALICE)
    reg.approve("acme", ADMIN)
    change = reg.withdraw("acme", ALICE)  # an owner's withdrawal is published at once
    assert change.kind is ChangeKind.WITHDRAWN
    assert change.entry.brand == BrandReference(brand_id="acme", version=4, deleted=True)
    assert pub.sent[-1].deleted and list(reg.entries()) == []
    assert [e.brand.version for e in reg.entries(include_withdrawn=True)] == [4]
    with pytest.raises(AlreadyWithdrawnError, match="already withdrawn at version 4"):
        reg.withdraw("acme", ALICE)
    with pytest.raises(StaleVersionError, match="not newer than the withdrawn version 4"):
        reg.put_obj(B(version=4), ALICE)
    with pytest.raises(NotOwnerError):
        reg.put_obj(B(version=9), BOB)  # the claim survives the withdrawal
    assert reg.put_obj(B(version=5), ALICE).kind is ChangeKind.SUBMITTED
    assert reg.get("acme").owner == "alice" and reg.get("acme").status is Status.PENDING


def test_withdraw_needs_a_newer_version_and_a_known_brand(reg):
    reg.put_obj(B(version=3), ALICE)
    with pytest.raises(StaleVersionError, match="version 3 is not newer"):
        reg.withdraw("acme", ALICE, version=3)
    with pytest.raises(BrandNotFoundError, match="nothing to withdraw"):
        reg.withdraw("nope", ALICE)
    with pytest.raises(BrandNotFoundError, match="nothing to withdraw"):
        reg.put_obj({"brand_id": "ghost", "version": 1, "deleted": True}, ALICE)


def test_ownership(reg):
    reg.put_obj(B(), ALICE)
    with pytest.raises(NotOwnerError, match="owned by another account"):
        reg.put_obj(B(version=2), BOB)
    with pytest.raises(NotOwnerError):
        reg.withdraw("acme", BOB)
    assert reg.put_obj(B(version=2), ADMIN).entry.owner == "alice"  # the operator keeps the owner
    assert reg.put_obj(B(brand_id="bulk"), ADMIN).entry.owner == ADMIN_OWNER
    with pytest.raises(NotOwnerError):
        reg.put_obj(B(brand_id="bulk", version=2), ALICE)  # operator's brands are not claimable
    assert [e.brand.brand_id for e in reg.entries(owner="alice")] == ["acme"]


@pytest.mark.parametrize("name,reason", [
    ("", "empty"), ("Alice", "upper case"), ("@admin", "the operator's marker"), ("a" * 65, "too long"),
])
def test_account_names(name, reason):
    with pytest.raises(ValueError, match="account name"):
        Actor.account(name)


def test_publish_failure_leaves_registry_unchanged(reg, pub):
    reg.put_obj(B(), ADMIN)
    pub.fail = RuntimeError("broker unreachable")
    with pytest.raises(PublishFailedError, match="acme v2 was not published, registry unchanged: broker unreachable"):
        reg.put_obj(B(version=2), ADMIN)
    assert reg.get("acme").brand.version == 1
    reg.put_obj(B(brand_id="zeta"), ALICE)
    with pytest.raises(PublishFailedError):
        reg.approve("zeta", ADMIN)
    assert reg.get("zeta").status is Status.PENDING and reg.get("zeta").live is None
    pub.fail = None
    assert reg.put_obj(B(version=3), ADMIN).kind is ChangeKind.UPDATED


def test_persists_across_reopen_and_read_only(tmp_path, pub):
    path = tmp_path / "registry"
    with BrandRegistry(path, pub) as r:
        r.put_obj(B(version=2, logos=[{"uri": "file:///img/x", "sha256": "b" * 64}]), ALICE)
        r.put_obj(B(brand_id="zeta", name="Zeta", trademarks=["ZETA"]), BOB)
        r.withdraw("zeta", BOB)
        with BrandRegistry(path, pub) as second:  # another writer at the same time (the CLI beside the API)
            second.put_obj(B(brand_id="omega", name="Omega", trademarks=["OMEGA"]), ADMIN)
        assert r.get("omega").owner == ADMIN_OWNER
        r.withdraw("omega", ADMIN)
        with BrandRegistry(path, read_only=True) as ro:  # works while the writer is open
            assert ro.get("acme").brand.version == 2
            with pytest.raises(ValueError, match="read-only"):
                ro.put_obj(B(version=3), ADMIN)
        before = list(r.entries(include_withdrawn=True))
    with BrandRegistry(path, pub) as r:
        assert list(r.entries(include_withdrawn=True)) == before
        assert r.get("acme").brand.logos[0].sha256 == "b" * 64
        with pytest.raises(StaleVersionError):
            r.put_obj(B(version=2), ALICE)
        with pytest.raises(NotOwnerError):
            r.put_obj(B(brand_id="zeta", version=9, name="Z", trademarks=["Z"]), ALICE)


def test_republish_sends_current_records(reg, pub):
    reg.put_obj(B(), ADMIN)
    reg.put_obj(B(brand_id="zeta", name="Zeta", trademarks=["ZETA"]), ADMIN)
    reg.withdraw("zeta", ADMIN)
    reg.put_obj(B(brand_id="pend", name="Pend", trademarks=["PEND"]), ALICE)  # never approved: not sent
    pub.sent.clear()
    assert reg.republish() == 2
    assert [(b.brand_id, b.version, b.deleted) for b in pub.sent] == [("acme", 1, False), ("zeta", 2, True)]


def test_metrics(reg):
    reg.put_obj(B(), ADMIN)
    reg.withdraw("acme", ADMIN)
    with pytest.raises(StaleVersionError):
        reg.put_obj(B(), ADMIN)
    text = generate_latest(reg.collector).decode()
    assert 'zeroscan_registry_changes_total{kind="registered"} 1.0' in text
    assert 'zeroscan_registry_changes_total{kind="withdrawn"} 1.0' in text
    assert 'zeroscan_registry_refused_total{reason="stale"} 1.0' in text
    assert "zeroscan_registry_publish_seconds_count 2.0" in text


def test_owner_submissions_wait_for_the_operator(reg, pub):
    """The abuse: an owner account registers ordinary phrases as marks and asks for takedown.
    Nothing is published until the operator approves; the operator sees why to look twice;
    takedown is published only when granted."""
    change = reg.put_obj(B(brand_id="gadgetco", name="GadgetCo", trademarks=["Wireless Earbuds", "Phone Case"],
                           enforcement="takedown"), ALICE)
    assert change.kind is ChangeKind.SUBMITTED and pub.sent == []
    [e] = reg.pending()
    assert e.status is Status.PENDING and e.live is None and e.requests == {Privilege.TAKEDOWN}
    assert len(e.concerns) == 2 and all("ordinary phrase" in c for c in e.concerns), e.concerns
    assert "'earbuds' zipf 3.1 (en)" in e.concerns[0]
    with pytest.raises(NotOwnerError, match="only an operator"):
        reg.approve("gadgetco", ALICE)
    approved = reg.approve("gadgetco", ADMIN)
    assert pub.sent[-1].enforcement is Action.REVIEW  # takedown not granted: published as review
    assert approved.entry.live == pub.sent[-1] and reg.pending() == []
    with pytest.raises(NotPendingError):
        reg.approve("gadgetco", ADMIN)
    granted = reg.set_privilege("gadgetco", Privilege.TAKEDOWN, ADMIN)
    assert (pub.sent[-1].version, pub.sent[-1].enforcement) == (2, Action.TAKEDOWN)
    assert granted.entry.brand.version == 2 and granted.entry.requests == frozenset()
    reg.set_privilege("gadgetco", Privilege.TAKEDOWN, ADMIN, granted=False)
    assert (pub.sent[-1].version, pub.sent[-1].enforcement) == (3, Action.REVIEW)
    actions = [(a.actor, a.action) for a in reg.audit("gadgetco")]
    assert actions == [("alice", "submitted"), (ADMIN_OWNER, "approved"), (ADMIN_OWNER, "granted"),
                       (ADMIN_OWNER, "revoked")]


def test_pending_update_keeps_the_approved_version_live(reg, pub):
    reg.put_obj(B(), ALICE)
    reg.approve("acme", ADMIN)
    reg.put_obj(B(version=2, trademarks=["ACME", "Phone Case"]), ALICE)
    e = reg.get("acme")
    assert e.status is Status.PENDING and e.live.version == 1 and [b.version for b in pub.sent] == [1]
    reg.reject("acme", ADMIN, "Phone Case is not your trademark")
    e = reg.get("acme")
    assert e.status is Status.REJECTED and e.note == "Phone Case is not your trademark" and e.live.version == 1
    with pytest.raises(NotOwnerError):
        reg.put_obj(B(version=9), BOB)  # an approved brand stays its owner's
    with pytest.raises(ValueError, match="needs a reason"):
        reg.reject("acme", ADMIN, " ")


def test_rejected_claim_is_released_and_shared_marks_are_shown(reg):
    reg.put_obj(B(brand_id="nike", name="Nike", trademarks=["Nike"]), BOB)
    reg.reject("nike", ADMIN, "not the trademark holder")
    reg.put_obj(B(brand_id="nike", name="Nike", trademarks=["NIKE"]), ALICE)  # free again
    assert reg.get("nike").owner == "alice"
    reg.approve("nike", ADMIN)
    reg.put_obj(B(brand_id="knockoff", name="Knockoff", trademarks=["nike", "Swoosh Co"],
                  logos=[{"uri": "file:///x", "sha256": "c" * 64}]), BOB)
    reg.put_obj(B(brand_id="copycat", name="Copycat", trademarks=["Copycat"],
                  logos=[{"uri": "file:///y", "sha256": "c" * 64}]), BOB)
    by_id = {e.brand.brand_id: e.concerns for e in reg.pending()}
    assert by_id["knockoff"] == ("mark 'nike' is also a mark of brand nike (owner alice)",)
    assert by_id["copycat"] == (f"logo {'c' * 12}… is also a logo of brand knockoff (owner bob)",)
    assert reg.images_of("bob") == {"c" * 64} and reg.images_of("alice") == set()


def test_operator_brands_work_as_before(reg, pub):
    change = reg.put_obj(B(enforcement="takedown", trademarks=["Phone Case"]), ADMIN)
    assert change.entry.status is Status.APPROVED and change.entry.grants == set(Privilege)
    assert pub.sent == [change.entry.brand] and pub.sent[0].enforcement is Action.TAKEDOWN


def test_every_change_is_a_ledger_action_record_and_an_unrecorded_change_is_rolled_back(tmp_path):
    import json
    from pathlib import Path

    import jsonschema

    schema = json.loads((Path(__file__).resolve().parents[2] / "brand_signals" / "schemas" / "project"
                         / "feedback-ledger.schema.json").read_text())
    records: list[dict] = []
    fail = []

    def ledger(rec: dict) -> None:
        if fail:
            raise RuntimeError("broker down")
        records.append(rec)

    reg = BrandRegistry(tmp_path / "r", lambda b: None, ledger=ledger, now_ms=lambda: 7, vet=lambda *_: ())
    alice = Actor.account("alice")
    reg.put(parse_brand('{"brand_id": "acme", "name": "Acme", "trademarks": ["Acme"], "version": 1}'), alice)
    reg.request("acme", Privilege.SELF_SERVICE_REMOVAL, alice)
    reg.approve("acme", Actor.admin(), [Privilege.SELF_SERVICE_REMOVAL])
    reg.set_privilege("acme", Privilege.TAKEDOWN, Actor.admin())
    reg.set_privilege("acme", Privilege.TAKEDOWN, Actor.admin(), granted=False)
    reg.withdraw("acme", alice)
    for r in records:
        jsonschema.validate(r, schema)
    assert [(r["kind"], r["actor"], r["brand_id"], r["event_time"]) for r in records] == [
        ("brand_submitted", "alice", "acme", 7), ("privilege_requested", "alice", "acme", 7),
        ("brand_approved", "@admin", "acme", 7), ("privilege_granted", "@admin", "acme", 7),
        ("privilege_revoked", "@admin", "acme", 7), ("brand_withdrawn", "alice", "acme", 7)]
    assert records[2]["detail"]["grants"] == ["self_service_removal"]
    fail.append(True)
    with pytest.raises(PublishFailedError, match="not recorded on the ledger"):
        reg.put(parse_brand('{"brand_id": "beta", "name": "Beta", "trademarks": ["Beta"], "version": 1}'), alice)
    assert reg.get("beta") is None and [a.action for a in reg.audit("beta")] == []
