"""The brand owners' API on a live uvicorn server (127.0.0.1, free port) over a real registry in a
temp folder, publishing to the session's real Kafka broker: authz and roles, the brand life cycle
(an owner's submission published only once an operator approves it), limits, OpenAPI and
metrics, and the published records on the brands topic."""
from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import socket
import threading
import time

import pytest
import requests
import uvicorn
from PIL import Image

from brand_signals.contract import parse_brand
from brand_signals.registry import BrandRegistry, ImageBudget
from connectors.brand_publisher import KafkaBrandPublisher
from connectors.image_store import ImageStore, sha256_hex
from connectors.feedback_io import FeedbackPublisher, SignalIndex, StandingIndex
from connectors.kafka_io import consume, produce_lines
from zeroscan.accounts import AccountStore, Role
from zeroscan.api import ApiLimits, create_app

pytestmark = pytest.mark.integration


def png(color=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (24, 24), color).save(buf, "PNG")
    return buf.getvalue()


LOGO = png()


def brand(version=1, brand_id="acme", **kw):
    return {"brand_id": brand_id, "version": version, "name": "Acme", "trademarks": ["ACME"], **kw}


class Api:
    def __init__(self, base: str, tokens: dict[str, str], state_dir) -> None:
        self.base, self.tokens, self.state_dir = base, tokens, state_dir
        self.http = requests.Session()

    def auth(self, who: str | None) -> dict[str, str]:
        return {} if who is None else {"Authorization": f"Bearer {self.tokens.get(who, who)}"}

    def put(self, who, obj, files=(), brand_id=None):
        bid = brand_id or obj["brand_id"]
        parts = [("brand", (None, json.dumps(obj), "application/json"))]
        parts += [("images", (name, data, "image/png")) for name, data in files]
        return self.http.put(f"{self.base}/v1/brands/{bid}", files=parts, headers=self.auth(who), timeout=30)

    def get(self, who, path, **kw):
        return self.http.get(f"{self.base}{path}", headers=self.auth(who), timeout=30, **kw)

    def delete(self, who, brand_id, **params):
        return self.http.delete(f"{self.base}/v1/brands/{brand_id}", headers=self.auth(who), params=params, timeout=30)

    def post(self, who, path, body):
        return self.http.post(f"{self.base}{path}", json=body, headers=self.auth(who), timeout=30)

    def approve(self, brand_id, *grant):
        r = self.post("ops", f"/v1/review/brands/{brand_id}/approve", {"grant": list(grant)})
        assert r.status_code == 200, r.text
        return r.json()


ROLES = {"alice": Role.OWNER, "bob": Role.OWNER, "ops": Role.OPERATOR, "rev": Role.REVIEWER}


@pytest.fixture
def start_api(kafka_settings):
    started = []

    def start(limits: ApiLimits = ApiLimits(max_request_bytes=256 << 10), budget: ImageBudget = ImageBudget()) -> Api:
        state = kafka_settings.state_dir
        publisher = KafkaBrandPublisher.from_settings(kafka_settings)
        registry = BrandRegistry.at_state_dir(state, publisher, image_budget=budget)
        accounts = AccountStore.at_state_dir(state)
        tokens = {name: accounts.create(name, role)[1] for name, role in ROLES.items()}
        feedback = FeedbackPublisher(kafka_settings.bootstrap, kafka_settings.topics.feedback)
        signals = SignalIndex(kafka_settings.bootstrap, kafka_settings.topics.decisions)
        standing = StandingIndex(kafka_settings.bootstrap, kafka_settings.topics.ledger)
        app = create_app(registry, ImageStore.at_state_dir(state), accounts, limits=limits,
                         feedback=feedback, signals=signals, standing=standing)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws="none", lifespan="off"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        api = Api(f"http://127.0.0.1:{sock.getsockname()[1]}", tokens, state)
        started.append((server, thread, sock, registry, publisher, api, (feedback, signals, standing)))
        return api

    yield start
    for server, thread, sock, registry, publisher, api, indexes in started:
        for part in indexes:
            part.close()
        api.http.close()
        server.should_exit = True
        thread.join(10)
        sock.close()
        registry.close()
        publisher.close()


def test_life_cycle_is_published(start_api, kafka_settings):
    api = start_api()
    r = api.put("alice", brand(logos=[{"uri": "acme.png"}], enforcement="takedown"), files=[("acme.png", LOGO)])
    assert r.status_code == 202, r.text  # submitted: pending until an operator approves it
    assert (r.json()["status"], r.json()["published"], r.json()["requests"]) == ("pending", None, ["takedown"])
    body = api.approve("acme", "takedown")
    assert body["status"] == "approved" and body["published"]["enforcement"] == "takedown"
    assert body["owner"] == "alice"
    logo = body["brand"]["logos"][0]
    assert logo["sha256"] == sha256_hex(LOGO) and logo["uri"].startswith("file:///")
    assert logo["uri"].endswith("/images/" + logo["sha256"][:2] + "/" + logo["sha256"])
    assert api.get("alice", "/v1/brands/acme").json() == body

    # an update that keeps the stored logo by its sha256, no upload needed
    r = api.put("alice", brand(version=2, logos=[{"uri": "acme.png", "sha256": logo["sha256"]}],
                               trademarks=["ACME", "ACME PRO"]))
    assert r.status_code == 202, r.text
    assert r.json()["brand"]["trademarks"] == ["ACME", "ACME PRO"] and r.json()["published"]["version"] == 1
    api.approve("acme")
    assert [b["brand"]["version"] for b in api.get("alice", "/v1/brands").json()["brands"]] == [2]

    r = api.delete("alice", "acme")
    assert r.status_code == 200 and r.json()["brand"] == {"brand_id": "acme", "version": 3, "deleted": True}
    assert api.get("alice", "/v1/brands").json() == {"brands": []}
    assert len(api.get("alice", "/v1/brands", params={"include_withdrawn": "true"}).json()["brands"]) == 1

    records = [(k, parse_brand(v)) for k, v, _p, _o in
               consume(kafka_settings.bootstrap, kafka_settings.topics.brands, idle_timeout_s=2.0, max_messages=3)]
    assert [k for k, _ in records] == [b"acme"] * 3
    assert [(b.version, b.deleted) for _, b in records] == [(1, False), (2, False), (3, True)]
    published_logo = records[0][1].logos[0]
    assert published_logo.sha256 == sha256_hex(LOGO)
    with open(published_logo.uri.removeprefix("file://"), "rb") as f:  # the job can read it
        assert f.read() == LOGO


def test_authz(start_api):
    api = start_api()
    assert api.put("alice", brand()).status_code == 202
    r = api.get(None, "/v1/brands/acme")
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
    assert api.get("zs_not-a-real-token", "/v1/brands/acme").status_code == 401
    assert api.put("zs_not-a-real-token", brand(version=2)).status_code == 401
    assert api.put(None, brand(version=2)).status_code == 401
    assert api.get("bob", "/v1/brands/acme").status_code == 403
    assert api.put("bob", brand(version=2)).status_code == 403
    assert api.delete("bob", "acme").status_code == 403
    assert api.get("bob", "/v1/brands").json() == {"brands": []}
    assert api.put("bob", brand(brand_id="zeta")).status_code == 202  # first come, first claimed
    assert api.get("alice", "/v1/brands/zeta").status_code == 403
    assert api.get("alice", "/v1/brands/nope").status_code == 404
    assert api.get("alice", "/v1/brands/acme").json()["brand"]["version"] == 1
    # roles: owners' routes for owners, review for operators, appeals for reviewers
    assert api.get("ops", "/v1/brands").status_code == 403 and api.put("rev", brand(brand_id="r")).status_code == 403
    assert api.get("alice", "/v1/review/pending").status_code == 403
    assert api.post("alice", "/v1/review/brands/acme/approve", {}).status_code == 403
    assert [e["brand"]["brand_id"] for e in api.get("ops", "/v1/review/pending").json()["pending"]] == ["acme", "zeta"]


def test_stale_version_is_a_conflict(start_api):
    api = start_api()
    assert api.put("alice", brand(version=3)).status_code == 202
    r = api.put("alice", brand(version=3))
    assert r.status_code == 409 and "send version 4 or higher" in r.json()["detail"]
    assert api.delete("alice", "acme", version=2).status_code == 409
    assert api.delete("alice", "acme").status_code == 200
    assert api.delete("alice", "acme").status_code == 409  # already withdrawn


BAD_REQUESTS = [
    # (brand JSON, files, path id, status, fragment, reason)
    (brand(trademarks=[]), [], None, 422, "trademarks", "contract violation"),
    (brand(), [], "other", 422, "in the path", "path and body ids differ"),
    (brand(logos=[{"uri": "x.png"}]), [("x.png", b"<html>hi</html>")], None, 422, "logos\\[0\\]: not a PNG",
     "HTML uploaded as a logo"),
    (brand(logos=[{"uri": "http://127.0.0.1:1/x.png"}]), [], None, 422, "does not fetch urls",
     "the API never fetches urls"),
    (brand(logos=[{"uri": "/etc/passwd"}]), [], None, 422, "does not fetch urls", "nor local paths"),
    (brand(), [("stray.png", LOGO)], None, 422, "not referenced", "an upload nothing refers to"),
    (brand(logos=[{"uri": "a.png", "sha256": "0" * 64}]), [("a.png", LOGO)], None, 422, "sha256 mismatch",
     "declared sha256 differs from the upload"),
]


@pytest.mark.parametrize("obj,files,path_id,status,fragment,reason", BAD_REQUESTS, ids=[r[-1] for r in BAD_REQUESTS])
def test_bad_requests(start_api, obj, files, path_id, status, fragment, reason):
    api = start_api()
    r = api.put("alice", obj, files=files, brand_id=path_id)
    assert r.status_code == status, r.text
    assert re.search(fragment, r.json()["detail"]), r.json()
    assert api.get("alice", "/v1/brands").json() == {"brands": []}


def test_image_pixel_budget_is_refused_at_registration(start_api):
    """Each 24 x 24 logo is 576 pixels: three are over a 1,200-pixel brand budget, refused (before
    the uploads are stored); one fits, and a second brand's two then take the catalogue over its
    1,500."""
    api = start_api(budget=ImageBudget(per_brand=1_200, per_catalog=1_500))
    three = [("a.png", LOGO), ("b.png", png((10, 200, 10))), ("c.png", png((10, 10, 200)))]
    r = api.put("alice", brand(logos=[{"uri": n} for n, _ in three]), files=three)
    assert r.status_code == 422 and "1728 pixels in all, above the per-brand limit of 1200" in r.json()["detail"]
    assert api.get("alice", "/v1/brands").json() == {"brands": []}
    assert api.put("alice", brand(logos=[{"uri": "a.png"}]), files=three[:1]).status_code == 202  # pending
    r = api.put("bob", brand(brand_id="other", logos=[{"uri": "b.png"}, {"uri": "c.png"}]), files=three[1:])
    assert r.status_code == 422 and "above the catalogue limit of 1500" in r.json()["detail"]


def test_request_size_limit(start_api):
    api = start_api(ApiLimits(max_request_bytes=64 << 10))
    big = [("big.png", b"\x89PNG\r\n\x1a\n" + b"\0" * (100 << 10))]
    r = api.put("alice", brand(logos=[{"uri": "big.png"}]), files=big)
    assert r.status_code == 413 and "65536-byte limit" in r.json()["detail"]

    def chunks():  # no Content-Length: the limit applies while the body streams in
        for _ in range(8):
            yield b"x" * (16 << 10)

    r = api.http.put(f"{api.base}/v1/brands/acme", data=chunks(), timeout=30,
                     headers={**api.auth("alice"), "Content-Type": "application/json"})
    assert r.status_code == 413
    assert api.get("alice", "/v1/brands").json() == {"brands": []}


def test_rate_limit(start_api):
    api = start_api(ApiLimits(rate_burst=3, rate_per_s=0.5))
    codes = [api.get("alice", "/v1/brands").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    r = api.get("alice", "/v1/brands")
    assert r.status_code == 429 and 1 <= int(r.headers["Retry-After"]) <= 2
    assert api.get("bob", "/v1/brands").status_code == 200  # per token


def test_openapi_docs_health_and_metrics(start_api):
    api = start_api()
    doc = api.get(None, "/openapi.json").json()
    op = doc["paths"]["/v1/brands/{brand_id}"]
    assert set(op) >= {"get", "put", "delete"}
    assert "multipart/form-data" in op["put"]["requestBody"]["content"]
    assert any(s.get("type") == "http" and s.get("scheme") == "bearer"
               for s in doc["components"]["securitySchemes"].values())
    assert "swagger" in api.get(None, "/docs").text.lower()
    assert api.get(None, "/healthz").json() == {"status": "ok"}

    api.put("alice", brand())
    api.get(None, "/v1/brands/acme")
    api.approve("acme")
    text = api.get(None, "/metrics").text
    assert 'zeroscan_api_requests_total{method="PUT",route="/v1/brands/{brand_id}",status="202"} 1.0' in text
    assert 'zeroscan_api_requests_total{method="GET",route="/v1/brands/{brand_id}",status="401"} 1.0' in text
    assert 'zeroscan_registry_changes_total{kind="submitted"} 1.0' in text
    assert 'zeroscan_registry_changes_total{kind="approved"} 1.0' in text
    assert "zeroscan_registry_publish_seconds_count 1.0" in text
    assert "zeroscan_api_auth_failures_total 1.0" in text
    assert api.tokens["alice"] not in text


def test_cli_put_resolves_logos_and_publishes(kafka_settings, tmp_path, capsys):
    """`zeroscan brands put DIR` as the operator: relative logo uris resolved beside the file,
    images kept in the store, every accepted record published; bad records named by file:line."""
    import argparse

    from zeroscan.brands_cli import register

    ap = argparse.ArgumentParser()
    register(ap.add_subparsers(dest="command", required=True))

    def run(*argv: str) -> int:
        args = ap.parse_args(list(argv))
        return args.fn(args, kafka_settings)

    src = tmp_path / "brands"
    (src / "logos").mkdir(parents=True)
    (src / "logos" / "acme.png").write_bytes(LOGO)
    (src / "a.jsonl").write_text(json.dumps(brand(logos=[{"uri": "logos/acme.png"}])) + "\n"
                                 + json.dumps({"brand_id": "Bad", "version": 1}) + "\n")
    (src / "b.json").write_text(json.dumps([brand(brand_id="zeta", version=2)]))
    (src / "notes.txt").write_text("ignored")
    assert run("brands", "put", str(src)) == 1
    out, err = capsys.readouterr()
    assert "acme v1 registered" in out and "zeta v2 registered" in out
    assert f"{src / 'a.jsonl'}:2: brand_id" in err and "2 accepted, 1 refused" in err
    assert run("brands", "delete", "zeta") == 0
    assert run("brands", "export", "--all") == 0
    exported = [json.loads(line) for line in capsys.readouterr().out.splitlines()[-2:]]
    assert exported[1] == {"brand_id": "zeta", "version": 3, "deleted": True}

    records = {(k, parse_brand(v).version) for k, v, _p, _o in
               consume(kafka_settings.bootstrap, kafka_settings.topics.brands, idle_timeout_s=2.0, max_messages=3)}
    assert records == {(b"acme", 1), (b"zeta", 2), (b"zeta", 3)}
    assert exported[0]["logos"][0]["sha256"] == sha256_hex(LOGO)


def test_self_service_removal_and_open_signals(start_api, kafka_settings):
    api = start_api()
    assert api.put("alice", brand(enforcement="takedown")).status_code == 202
    assert api.put("bob", brand(brand_id="other")).status_code == 202
    url = f"{api.base}/v1/brands/acme/removals"
    r = api.http.post(url, json={"listing_id": "l-1", "reason": "fake"}, headers=api.auth("alice"), timeout=30)
    assert r.status_code == 403 and "not approved yet" in r.json()["detail"]
    api.approve("acme")
    r = api.http.post(url, json={"listing_id": "l-1", "reason": "fake"}, headers=api.auth("alice"), timeout=30)
    assert r.status_code == 403 and "self-service removal is not granted" in r.json()["detail"]
    r = api.post("alice", "/v1/brands/acme/requests", {"privilege": "self_service_removal"})
    assert r.status_code == 200 and r.json()["requests"] == ["self_service_removal", "takedown"]
    r = api.post("ops", "/v1/review/brands/acme/privileges", {"privilege": "self_service_removal"})
    assert r.status_code == 200 and r.json()["grants"] == ["self_service_removal"]
    r = api.http.post(url, json={"listing_id": "l-1", "reason": "fake"}, headers=api.auth("alice"), timeout=30)
    assert r.status_code == 202, r.text
    assert r.json()["submitted"]["actor"] == "alice"
    assert api.http.post(url, json={"listing_id": "l-1"}, headers=api.auth("bob"), timeout=30).status_code == 403
    assert api.http.post(url, json={"listing_id": "l-1"}, timeout=30).status_code == 401
    assert api.http.post(url, json={"listing_id": ""}, headers=api.auth("alice"), timeout=30).status_code == 422
    [(key, value, _p, _o)] = list(consume(kafka_settings.bootstrap, kafka_settings.topics.feedback,
                                          idle_timeout_s=2.0))
    assert key == b"l-1" and json.loads(value)["kind"] == "brand_removal"
    assert json.loads(value)["brand_id"] == "acme"

    # open signals follow the decisions topic: flagged, then cleared
    decisions = [{"listing_id": "l-7", "seller_id": "s", "brand_id": "acme", "action": "takedown", "score": 0.95,
                  "signals": [], "decided_at": 1},
                 {"listing_id": "l-8", "seller_id": "s", "brand_id": "acme", "action": "review", "score": 0.6,
                  "signals": [], "decided_at": 1},
                 {"listing_id": "l-8", "seller_id": "s", "brand_id": "acme", "action": "clear", "score": 0,
                  "signals": [], "decided_at": 2}]
    produce_lines(kafka_settings.bootstrap, kafka_settings.topics.decisions,
                  [json.dumps(d).encode() for d in decisions], "listing_id")
    deadline = time.monotonic() + 10
    while True:
        got = api.get("alice", "/v1/brands/acme/signals").json()["signals"]
        if [d["listing_id"] for d in got] == ["l-7"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert [d["listing_id"] for d in got] == ["l-7"]
    assert api.get("bob", "/v1/brands/acme/signals").status_code == 403

    # standing: the job's ledger says the brand was suspended; the owner reads it
    produce_lines(kafka_settings.bootstrap, kafka_settings.topics.ledger, [json.dumps(
        {"kind": "appeal_upheld", "listing_id": "l-1", "brand_id": "acme", "event_time": 5, "actor": "r",
         "brand_status": "suspended"}).encode()], "listing_id")
    deadline = time.monotonic() + 10
    while True:
        st = api.get("alice", "/v1/brands/acme/standing").json()
        if st["notifications"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert st["notifications"] == [{"event_time": 5, "self_service": "suspended"}]
    assert st["removals"]["appeal_upheld"] == 1
    assert api.get("bob", "/v1/brands/acme/standing").status_code == 403


def test_cli_removal_needs_the_owners_token_and_appeals_are_recorded(kafka_settings, tmp_path, capsys,
                                                                     monkeypatch):
    """`zeroscan removals create` acts only with the token of the brand's owner (approved, with
    the removal privilege); `appeals decide` only with a reviewer's token, which names the
    reviewer; both land on the feedback topic."""
    import argparse

    from brand_signals.contract import brand_from_obj
    from brand_signals.registry import Actor
    from zeroscan.feedback_cli import register

    from brand_signals.registry import Privilege

    accounts = AccountStore.at_state_dir(kafka_settings.state_dir)
    alice, bob = accounts.create("alice")[1], accounts.create("bob")[1]
    reviewer = accounts.create("r-7", Role.REVIEWER)[1]
    with BrandRegistry.at_state_dir(kafka_settings.state_dir) as reg:
        reg.put(brand_from_obj(brand()), Actor.account("alice"))
        reg.approve("acme", Actor.admin(), [Privilege.SELF_SERVICE_REMOVAL])
    ap = argparse.ArgumentParser()
    register(ap.add_subparsers(dest="command", required=True))

    def run(*argv: str) -> int:
        # the token is read with the rest of the configuration, once per command (Settings)
        args = ap.parse_args(list(argv))
        return args.fn(args, dataclasses.replace(kafka_settings, token=os.environ.get("ZEROSCAN_TOKEN")))

    monkeypatch.setenv("ZEROSCAN_TOKEN", bob)
    assert run("removals", "create", "--brand", "acme", "--listing", "l-1") == 3
    monkeypatch.setenv("ZEROSCAN_TOKEN", "zs_not-a-token")
    assert run("removals", "create", "--brand", "acme", "--listing", "l-1") == 2
    monkeypatch.setenv("ZEROSCAN_TOKEN", alice)
    assert run("removals", "create", "--brand", "acme", "--listing", "l-1", "--reason", "fake") == 0
    assert run("appeals", "decide", "--brand", "acme", "--listing", "l-1", "--upheld") == 3  # an owner's token
    monkeypatch.setenv("ZEROSCAN_TOKEN", reviewer)
    assert run("appeals", "decide", "--brand", "acme", "--listing", "l-1", "--upheld") == 0
    assert run("signals", "list", "--brand", "acme") == 3  # a reviewer is not the owner
    err = capsys.readouterr().err
    assert "not registered to account bob" in err and "invalid API token" in err
    assert "with the reviewer role; alice has the owner role" in err
    sent = [json.loads(v) for _k, v, _p, _o in consume(kafka_settings.bootstrap, kafka_settings.topics.feedback,
                                                      idle_timeout_s=2.0)]
    assert [(e["kind"], e["actor"]) for e in sent] == [("brand_removal", "alice"), ("appeal_upheld", "r-7")]
