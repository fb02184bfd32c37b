"""Brand owners are trusted no further than their rights, tried as an abusive owner would on the
real broker, the streaming job, the live API and the command line in another process: an owner
account's brand of ordinary phrases with `takedown` makes no decision until an operator approves
it (the operator is shown why to refuse it and does, from the command line while the API
serves); appeals need a reviewer; another account cannot reuse a stored logo by its sha256; every
action of an owner, the operator or an account change is on the ledger (who, when, what)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import jsonschema
import pytest

from connectors.kafka_io import consume, produce_lines
from tests.conftest import ROOT, settings_env
from tests.integration.test_api import LOGO, brand, start_api  # noqa: F401 (a fixture)
from tests.integration.test_kafka_job import listing, read, start_job, stop, wait_committed

pytestmark = pytest.mark.integration


def cli(settings, *argv: str) -> subprocess.CompletedProcess:
    """`zeroscan ...` in its own process, on the same state folder as the running API."""
    return subprocess.run([sys.executable, "-m", "zeroscan", *argv], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **settings_env(settings)}, timeout=120)


def test_owner_brand_waits_for_the_operator_who_works_beside_the_api(start_api, kafka_settings, tmp_path):
    s = kafka_settings
    api = start_api()
    r = api.put("alice", brand(brand_id="gadgetco", name="GadgetCo", trademarks=["Wireless Earbuds", "Phone Case"],
                               enforcement="takedown"))
    assert r.status_code == 202 and r.json()["status"] == "pending", r.text
    # the operator registers a brand from the command line while the API holds the registry
    (tmp_path / "veltrix.json").write_text(json.dumps(
        {"brand_id": "veltrix", "name": "Veltrix", "trademarks": ["Veltrix"], "enforcement": "takedown", "version": 1}))
    done = cli(s, "brands", "put", str(tmp_path / "veltrix.json"))
    assert done.returncode == 0 and "veltrix v1 registered" in done.stdout, done.stderr
    produce_lines(s.bootstrap, s.topics.listings, [
        listing(1, "Wireless Earbuds Bluetooth 5.3 Noise Cancelling In-Ear Headphones", seller="s-honest"),
        listing(2, "Phone Case for iPhone 15 clear silicone", seller="s-honest"),
        listing(3, "Veltrix cordless drill 18V", seller="s-9"),
    ], "listing_id")
    job = start_job(s, "job.log")
    try:
        wait_committed(s, job)
        decisions = read(s, s.topics.decisions)
    finally:
        stop(job)
    assert [(d["listing_id"], d["brand_id"], d["action"]) for d in decisions] == [("l3", "veltrix", "takedown")]

    [pending] = api.get("ops", "/v1/review/pending").json()["pending"]
    assert pending["brand"]["brand_id"] == "gadgetco" and pending["requests"] == ["takedown"]
    assert [c.split(" is ")[0] for c in pending["concerns"]] == ["mark 'Wireless Earbuds'", "mark 'Phone Case'"]
    assert all("an ordinary phrase of the listing languages" in c for c in pending["concerns"])
    listed = cli(s, "brands", "pending")
    assert listed.returncode == 0 and "! mark 'Wireless Earbuds' is an ordinary phrase" in listed.stdout
    done = cli(s, "brands", "reject", "gadgetco", "--reason", "ordinary phrases, not trademarks")
    assert done.returncode == 0 and "rejected by @admin" in done.stdout, done.stderr
    mine = api.get("alice", "/v1/brands/gadgetco").json()
    assert (mine["status"], mine["note"], mine["published"]) == ("rejected", "ordinary phrases, not trademarks", None)
    assert [(k, json.loads(v)["brand_id"]) for k, v, _p, _o in
            consume(s.bootstrap, s.topics.brands, idle_timeout_s=2)] == [(b"veltrix", "veltrix")]
    history = cli(s, "brands", "history", "gadgetco").stdout.splitlines()
    assert [line.split("\t")[1:3] for line in history] == [["alice", "submitted"], ["@admin", "rejected"]]

    # appeals are decided with a reviewer's token only; the event names the reviewer
    appeal = {"brand_id": "veltrix", "listing_id": "l3", "upheld": True, "reason": "genuine stock"}
    assert api.post("alice", "/v1/appeals", appeal).status_code == 403
    assert api.post(None, "/v1/appeals", appeal).status_code == 401
    r = api.post("rev", "/v1/appeals", appeal)
    assert r.status_code == 202 and r.json()["submitted"]["actor"] == "rev"

    # a stored logo is not another account's to reuse by its digest; uploading the same bytes is
    # possible, and the operator is told that another brand holds that logo
    r = api.put("alice", brand(logos=[{"uri": "acme.png"}]), files=[("acme.png", LOGO)])
    sha = r.json()["brand"]["logos"][0]["sha256"]
    api.approve("acme")
    r = api.put("bob", brand(brand_id="acme-deals", logos=[{"uri": "x.png", "sha256": sha}]))
    assert r.status_code == 422 and "is not an image of your brands" in r.json()["detail"]
    r = api.put("bob", brand(brand_id="acme-deals", logos=[{"uri": "x.png"}]), files=[("x.png", LOGO)])
    assert r.status_code == 202
    assert f"logo {sha[:12]}… is also a logo of brand acme (owner alice)" in r.json()["concerns"]

    # every action is on the ledger, who, when and what, beside the removal outcomes
    assert cli(s, "accounts", "create", "dave", "--role", "reviewer").returncode == 0
    schema = json.loads((ROOT / "brand_signals" / "schemas" / "project" / "feedback-ledger.schema.json").read_text())
    ledger = [(k, json.loads(v)) for k, v, _p, _o in consume(s.bootstrap, s.topics.ledger, idle_timeout_s=2)]
    for _k, rec in ledger:
        jsonschema.validate(rec, schema)
    assert [(k, r["kind"], r["actor"]) for k, r in ledger] == [
        (b"gadgetco", "brand_submitted", "alice"), (b"veltrix", "brand_registered", "@admin"),
        (b"gadgetco", "brand_rejected", "@admin"), (b"acme", "brand_submitted", "alice"),
        (b"acme", "brand_approved", "ops"), (b"acme-deals", "brand_submitted", "bob"),
        (b"account:dave", "account_created", "@admin")]
    rejected = ledger[2][1]
    assert rejected["detail"] == {"version": 1, "reason": "ordinary phrases, not trademarks"}
    assert ledger[-1][1]["detail"] == {"role": "reviewer"} and all(r["event_time"] > 0 for _k, r in ledger)
