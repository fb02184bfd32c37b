"""The API's routers answer typed models, and the OpenAPI document describes them: real fields
and each route's error codes (served by uvicorn on 127.0.0.1, no broker: a registry without a
publisher, a feedback publisher that only returns the event)."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from brand_signals.registry import BrandRegistry
from connectors.feedback_io import feedback_obj
from connectors.image_store import ImageStore
from zeroscan.accounts import AccountStore, Role
from tests.portal_support import serve
from zeroscan.api import create_app

pytestmark = pytest.mark.unit


class _Feedback:
    def submit(self, ev):
        return feedback_obj(ev)


class _Standing:
    def standing(self, brand_id):
        return {"brand_id": brand_id, "accuracy": None, "decided_removals": 0, "accuracy_bar": 0.9, "window_days": 90,
                "self_service_suspended": False, "removals": {"removal_accepted": 0}, "notifications": [], "trend": []}


@pytest.fixture
def api(tmp_path):
    registry = BrandRegistry.at_state_dir(tmp_path)
    accounts = AccountStore.at_state_dir(tmp_path)
    tokens = {name: accounts.create(name, role)[1] for name, role in (("alice", Role.OWNER), ("ops", Role.OPERATOR))}
    app = create_app(registry, ImageStore.at_state_dir(tmp_path), accounts, feedback=_Feedback(), standing=_Standing())
    with serve(app) as base:
        yield _caller(base, tokens)
    registry.close()


def _caller(base, tokens):
    def call(method, path, who=None, body=None):
        req = urllib.request.Request(base + path, method=method, data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json",
                                              **({"Authorization": f"Bearer {tokens[who]}"} if who else {})})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())
    return call


def test_the_openapi_document_names_fields_and_error_codes(api):
    status, doc = api("GET", "/openapi.json")
    assert status == 200
    schemas = doc["components"]["schemas"]
    assert {"owner", "status", "grants", "published"} <= set(schemas["EntryOut"]["properties"])
    assert schemas["StandingOut"]["properties"]["self_service_suspended"]["type"] == "boolean"
    put = doc["paths"]["/v1/brands/{brand_id}"]["put"]["responses"]
    assert {"201", "202", "401", "409", "413", "422", "429"} <= set(put)
    assert put["409"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorOut")
    assert doc["paths"]["/v1/brands"]["get"]["responses"]["200"]["content"]["application/json"]["schema"][
        "$ref"].endswith("/BrandsOut")


def test_answers_are_the_typed_models(api):
    brand = {"brand_id": "acme", "version": 1, "name": "Acme", "trademarks": ["Acme"], "enforcement": "notify"}
    status, entry = api("PUT", "/v1/brands/acme", "alice", brand)
    assert status in (201, 202) and entry["owner"] == "alice" and entry["brand"]["brand_id"] == "acme"
    assert api("GET", "/v1/brands/acme", "alice") == (200, entry)
    assert api("GET", "/v1/brands", "alice") == (200, {"brands": [entry]})
    status, err = api("GET", "/v1/brands/nope", "alice")
    assert status == 404 and set(err) == {"detail"}
    assert api("GET", "/v1/brands", None)[0] == 401
    assert api("GET", "/v1/review/pending", "alice")[0] == 403             # another role
    status, pending = api("GET", "/v1/review/pending", "ops")
    assert status == 200 and isinstance(pending["pending"], list)
    assert api("GET", "/v1/brands/acme/standing", "alice")[1]["accuracy"] is None
    assert api("GET", "/healthz") == (200, {"status": "ok"})
