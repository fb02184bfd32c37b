"""Secured Kafka end to end: a broker of its own with a SASL_SSL (SCRAM-SHA-512) listener, dev CA
certificates and ACLs; the streaming job, the brand API (over HTTPS) and the CLI each run as
their own principal against it. Plaintext, a wrong password and a missing right are refused, and
no password shows up in any log or state file."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from connectors.dev_certs import DevCA
from connectors.kafka_admin import contract_topics, ensure_topics, grant_roles
from connectors.kafka_broker import KafkaBroker, free_port_pair
from connectors.kafka_io import consume, produce_lines
from zeroscan.api import SHUTDOWN_GRACE_S
from zeroscan.settings import KafkaClientConfig, Settings, Topics
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

START_TIMEOUT_S = 240  # the job on 2 busy cores; typically 30 s
REFUSAL_TIMEOUT_S = 8.0
ROLE_NAMES = ("admin", "scanner", "api", "cli", "reader")


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory):
    broker = KafkaBroker(tmp_path_factory.mktemp("secure-kafka"), Settings.from_env().jar_dir / "kafka-broker",
                         port=free_port_pair(), secure=True)
    broker.up()
    yield broker
    broker.down()


@pytest.fixture
def secure_topics(secure_broker):
    tag = uuid.uuid4().hex[:8]
    topics, group, txn = Topics.prefixed(f"s{tag}-"), f"scanner-{tag}", f"scanner-{tag}"
    ensure_topics(secure_broker.client_config(), contract_topics(topics, partitions=2))
    grant_roles(secure_broker.client_config(), topics, group, txn)
    return topics, group, txn


def _errors_of(conf: dict) -> list[KafkaError]:
    """What the broker answers a client with `conf`: the errors it reports while asking for metadata."""
    errors: list[KafkaError] = []
    client = AdminClient({**conf, "error_cb": errors.append})
    with pytest.raises(KafkaException):
        client.list_topics(timeout=REFUSAL_TIMEOUT_S)
    deadline = time.monotonic() + REFUSAL_TIMEOUT_S
    while not errors and time.monotonic() < deadline:  # error callbacks are served by poll()
        client.poll(0.2)
    return errors


def test_plaintext_wrong_password_and_missing_rights_are_refused(secure_broker, secure_topics, tmp_path):
    topics, _group, _txn = secure_topics
    # No TLS, no SASL on the SASL_SSL port: no metadata, ever.
    _errors_of({"bootstrap.servers": secure_broker.bootstrap})
    # The right TLS, a wrong password: the broker says authentication failed.
    reader = secure_broker.client_config("reader")
    wrong = {**reader.conf(), "sasl.password": "not-the-password"}
    errors = _errors_of(wrong)
    assert KafkaError._AUTHENTICATION in {e.code() for e in errors}, errors
    # The right password over TLS that trusts another CA: the handshake fails first.
    other_ca = DevCA(tmp_path / "other-ca")
    errors = _errors_of({**reader.conf(), "ssl.ca.location": str(other_ca.cert_path)})
    assert {e.code() for e in errors} & {KafkaError._SSL, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN}, errors

    # Authenticated but without the right: the reader may not write brands, feedback (a removal
    # or an appeal past the API) or the ledger, nor read listings; the API may not write listings.
    with pytest.raises(RuntimeError, match="TOPIC_AUTHORIZATION_FAILED|[Aa]uthoriz"):
        produce_lines(reader, topics.brands, [b'{"brand_id": "evil"}'], "brand_id")
    for topic in (topics.feedback, topics.ledger):
        with pytest.raises(RuntimeError, match="TOPIC_AUTHORIZATION_FAILED|[Aa]uthoriz"):
            produce_lines(reader, topic, [b'{"listing_id": "l1", "kind": "appeal_upheld"}'], "listing_id")
    with pytest.raises(RuntimeError, match="[Aa]uthoriz"):
        list(consume(reader, topics.listings, idle_timeout_s=REFUSAL_TIMEOUT_S))
    with pytest.raises(RuntimeError, match="[Aa]uthoriz"):
        produce_lines(secure_broker.client_config("api"), topics.listings, [b'{"listing_id": "x"}'], "listing_id")
    # ...and the admin may: topics and ACLs were created with it.
    assert topics.decisions in AdminClient(secure_broker.client_config().conf()).list_topics(timeout=10).topics


def _env(broker: KafkaBroker, role: str, state: Path, topics: Topics, group: str, txn: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "ZEROSCAN_BOOTSTRAP"}
    return {**env, "ZEROSCAN_KAFKA_CONFIG": str(broker.client_properties(role)), "ZEROSCAN_STATE_DIR": str(state),
            "ZEROSCAN_GROUP": group, "ZEROSCAN_TXN_PREFIX": txn,
            "ZEROSCAN_TOPIC_PREFIX": topics.listings[: -len("listings")], "ZEROSCAN_IMAGES": "off"}


def _zeroscan(args: list[str], env: dict[str, str], **kw) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "zeroscan", *args], cwd=ROOT, env=env, capture_output=True,
                       timeout=120, **kw)
    assert r.returncode == 0, (args, r.stdout.decode()[-2000:], r.stderr.decode()[-2000:])
    return r


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as f:
        return subprocess.Popen([sys.executable, "-m", "zeroscan", *args], cwd=ROOT, env=env, stdout=f,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_https(url: str, ca: Path, token: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            requests.get(url, verify=str(ca), headers={"Authorization": f"Bearer {token}"}, timeout=5)
            return
        except requests.ConnectionError:
            time.sleep(0.3)
    raise AssertionError(f"API did not answer on {url}: {log.read_text()[-3000:]}")


def test_job_api_and_cli_as_their_principals(secure_broker, secure_topics, tmp_path):
    topics, group, txn = secure_topics
    state = tmp_path / "state"
    state.mkdir()
    env = {role: _env(secure_broker, role, state, topics, group, txn) for role in ("scanner", "api", "cli", "reader")}

    # The operator (CLI principal) registers a brand; an owner account registers one over HTTPS.
    (tmp_path / "veltrix.json").write_text(json.dumps(
        {"brand_id": "veltrix", "version": 1, "name": "Veltrix", "trademarks": ["Veltrix"], "enforcement": "takedown"}))
    _zeroscan(["brands", "put", str(tmp_path / "veltrix.json")], env["cli"])
    token = _zeroscan(["accounts", "create", "alice"], env["cli"]).stdout.decode().strip()
    api_cert = DevCA(secure_broker.secure_dir).issue("api-test", "zeroscan-api")
    port = _free_port()
    job = _start(["job", "run"], env["scanner"], tmp_path / "job.log")
    api = _start(["api", "serve", "--port", str(port), "--tls-cert", str(api_cert.cert), "--tls-key", str(api_cert.key)],
                 env["api"], tmp_path / "api.log")
    try:
        base = f"https://127.0.0.1:{port}"
        _wait_https(f"{base}/v1/brands", secure_broker.ca_file, token, api, tmp_path / "api.log")
        r = requests.put(f"{base}/v1/brands/quillon", verify=str(secure_broker.ca_file), timeout=30,
                         headers={"Authorization": f"Bearer {token}"},
                         files=[("brand", (None, json.dumps({"brand_id": "quillon", "version": 1, "name": "Quillon",
                                                             "trademarks": ["Quillon"]}), "application/json"))])
        assert r.status_code == 202, r.text                     # pending until the operator approves it
        _zeroscan(["brands", "approve", "quillon"], env["cli"])  # the operator, beside the running API
        published = {json.loads(v)["brand_id"] for _k, v, _p, _o in
                     consume(secure_broker.client_config("cli"), topics.brands, idle_timeout_s=2)}
        assert published == {"veltrix", "quillon"}

        # Listings through the CLI; the job's decision read back by the reader, read_committed.
        (tmp_path / "listings.jsonl").write_text("".join(json.dumps(
            {"listing_id": lid, "seller_id": "s-1", "event_time": 1_700_000_000_000, "title": title}) + "\n"
            for lid, title in (("l1", "Veltrix cordless drill 18V"), ("l2", "Plain steel hammer"))))
        _zeroscan(["produce", topics.listings, str(tmp_path / "listings.jsonl")], env["cli"])
        deadline = time.monotonic() + START_TIMEOUT_S
        decisions: list[dict] = []
        while not decisions:
            assert job.poll() is None, (tmp_path / "job.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (tmp_path / "job.log").read_text()[-3000:]
            out = _zeroscan(["consume", topics.decisions, "--idle", "2"], env["reader"]).stdout.decode()
            decisions = [json.loads(line) for line in out.splitlines() if line.strip()]
        assert [(d["listing_id"], d["brand_id"], d["action"]) for d in decisions] == [("l1", "veltrix", "takedown")]
    finally:
        _stop(api)
        _stop(job)

    # Secrets: no principal's password in the commands' output, the job's logs or its state.
    passwords = [KafkaClientConfig.load(secure_broker.client_properties(r)).get("sasl.password").encode()
                 for r in ROLE_NAMES]
    leaks = []
    for path in [tmp_path / "job.log", tmp_path / "api.log", *state.rglob("*")]:
        if path.is_file():
            data = path.read_bytes()
            leaks += [str(path.relative_to(tmp_path)) for pw in passwords if pw in data]
    assert leaks == []


def test_api_serves_https_only(tmp_path):
    """`api serve --tls-cert --tls-key`: HTTPS with the CA that signed the certificate; plain HTTP and
    clients that do not trust the CA get nothing."""
    ca = DevCA(tmp_path / "ca")
    cert = ca.issue("api", "zeroscan-api")
    env = {**os.environ, "ZEROSCAN_STATE_DIR": str(tmp_path / "state")}
    # no broker here: the account (like the API below) is not recorded on a ledger
    token = _zeroscan(["accounts", "create", "alice", "--no-publish"], env).stdout.decode().strip()
    port = _free_port()
    log = tmp_path / "api.log"
    api = _start(["api", "serve", "--no-publish", "--port", str(port), "--tls-cert", str(cert.cert),
                  "--tls-key", str(cert.key)], env, log)
    try:
        _wait_https(f"https://127.0.0.1:{port}/v1/brands", ca.cert_path, token, api, log)
        r = requests.get(f"https://127.0.0.1:{port}/v1/brands", verify=str(ca.cert_path), timeout=10,
                         headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and r.json() == {"brands": []}
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"https://127.0.0.1:{port}/v1/brands", timeout=10)  # the system's CAs only
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/v1/brands", timeout=10,
                         headers={"Authorization": f"Bearer {token}"})
        # A client that connects and never begins its TLS handshake does not hold the API's stop
        # past its grace (zeroscan.api.SHUTDOWN_GRACE_S; without one it waited 30 s).
        silent = socket.create_connection(("127.0.0.1", port), timeout=10)
    finally:
        t0 = time.monotonic()
        _stop(api)
        stopped_s = time.monotonic() - t0
    silent.close()
    # uvicorn ends by raising the SIGTERM it took again, once it has shut down
    assert api.returncode in (0, -signal.SIGTERM) and stopped_s < SHUTDOWN_GRACE_S + 15, (api.returncode, stopped_s)
    assert "Finished server process" in log.read_text()
    assert "https://127.0.0.1" in log.read_text()
