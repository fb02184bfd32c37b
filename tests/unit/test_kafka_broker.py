"""The dev broker's cluster id: the storage tool takes it as a command-line argument."""
import base64
import uuid

import pytest

from connectors import kafka_broker

pytestmark = pytest.mark.unit


def test_cluster_id_never_starts_with_a_dash(monkeypatch):
    dash_first = uuid.UUID(bytes=b"\xfb" + bytes(15))     # url-safe base64 of 0xfb... starts with '-'
    assert base64.urlsafe_b64encode(dash_first.bytes).decode().startswith("-")
    ids = iter([dash_first, uuid.UUID(int=7)])
    monkeypatch.setattr(kafka_broker.uuid, "uuid4", lambda: next(ids))
    cid = kafka_broker.new_cluster_id()
    assert not cid.startswith("-") and len(cid) == 22
