"""A single-node Apache Kafka 4.x broker in KRaft mode, run from the Maven Central jars that
`make jars` fetched into the checkout's cache. Used by `zeroscan kafka up|down|status`,
`make run` and the integration tests; production points `ZEROSCAN_BOOTSTRAP` at a real cluster.

`secure=True` (`zeroscan kafka up --secure`) serves clients on a SASL_SSL listener (SCRAM-SHA-512
over TLS, certificates from a development CA) with ACLs enforced; the controller listener is TLS
with client certificates (only the broker's own certificate gets in). Passwords for the admin and
each role principal are generated at format time into client properties files under
`<state>/kafka/secure/clients/`, readable by the owner only.
"""
from __future__ import annotations

import base64
import os
import secrets
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from connectors.dev_certs import DevCA, write_private_text
from connectors.kafka_admin import ADMIN_PRINCIPAL, ROLES, ensure_topics, wait_for_broker
from connectors.kafka_config import KafkaClientConfig, parse_properties

# 256-512 MB heap is plenty for a dev broker (measured: ~300 MB resident with the topics here).
BROKER_HEAP = "-Xms256m -Xmx512m"
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0
SCRAM_MECHANISM = "SCRAM-SHA-512"
SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule"
# The broker's certificate: its principal on the controller listener (a super user).
BROKER_CN = "zeroscan-broker"
PLAINTEXT, SASL_SSL = "plaintext", "sasl_ssl"


@dataclass(frozen=True, slots=True)
class BrokerStatus:
    running: bool
    pid: int | None
    bootstrap: str
    data_dir: Path
    log_file: Path
    security: str = PLAINTEXT
    clients_dir: Path | None = None

    def describe(self) -> str:
        how = "" if self.security == PLAINTEXT else f" (SASL_SSL; client properties in {self.clients_dir})"
        if self.running:
            return (f"kafka running (pid {self.pid}) on {self.bootstrap}{how}; data {self.data_dir}; "
                    f"log {self.log_file}")
        return f"kafka not running (would listen on {self.bootstrap}{how}; data {self.data_dir})"



def free_port_pair() -> int:
    """A free loopback port P whose P + 1 is free too (a broker's client and controller ports)."""
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
        with socket.socket() as b:
            try:
                b.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair")

class KafkaBroker:
    """Owns one broker's config, data and process under `state_dir`."""

    def __init__(self, state_dir: Path, jar_dir: Path, port: int = 9092, controller_port: int | None = None,
                 secure: bool | None = None):
        """`secure`: None keeps what the data folder was formatted with (plaintext if new)."""
        self.home = state_dir / "kafka"
        self.secure_dir = self.home / "secure"
        self.clients_dir = self.secure_dir / "clients"
        self._mode_file = self.home / "security"
        formatted = self._mode_file.read_text().strip() if self._mode_file.exists() else None
        if formatted is None and (self.home / "data" / "meta.properties").exists():
            formatted = PLAINTEXT
        wanted = None if secure is None else (SASL_SSL if secure else PLAINTEXT)
        if formatted and wanted and formatted != wanted:
            raise RuntimeError(f"the broker's data in {self.home} was formatted {formatted}, not {wanted}: stop it "
                               "and remove that folder, or use another ZEROSCAN_STATE_DIR")
        self.security = wanted or formatted or PLAINTEXT
        self.jar_dir = jar_dir
        self.port = port
        self.controller_port = controller_port or port + 1
        self.data_dir = self.home / "data"
        self.pid_file = self.home / "broker.pid"
        self.log_file = self.home / "logs" / "server.log"
        self.props_file = self.home / "server.properties"
        self._proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def status(self) -> BrokerStatus:
        pid = self._pid()
        return BrokerStatus(pid is not None and _port_open(self.port), pid, self.bootstrap, self.data_dir, self.log_file,
                            self.security, self.clients_dir if self.security == SASL_SSL else None)

    @property
    def secure(self) -> bool:
        return self.security == SASL_SSL

    def client_config(self, principal: str = ADMIN_PRINCIPAL) -> KafkaClientConfig:
        """How `principal` (admin or a role) reaches this broker; plaintext brokers have no principals."""
        if not self.secure:
            return KafkaClientConfig(self.bootstrap)
        path = self.client_properties(principal)
        if not path.exists():
            raise RuntimeError(f"no client properties for {principal!r} in {self.clients_dir}: start the broker first")
        return KafkaClientConfig.load(path, self.bootstrap)

    def client_properties(self, principal: str) -> Path:
        return self.clients_dir / f"{principal}.properties"

    @property
    def ca_file(self) -> Path:
        return self.secure_dir / "ca.pem"

    def _security_props(self) -> dict[str, str]:
        if not self.secure:
            return {
                "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
                "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
                "inter.broker.listener.name": "PLAINTEXT",
                "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            }
        ca = DevCA(self.secure_dir)
        broker = ca.issue("broker", BROKER_CN)
        admin_password = self._passwords()[ADMIN_PRINCIPAL]
        return {
            "listeners": f"SASL_SSL://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"SASL_SSL://127.0.0.1:{self.port}",
            "inter.broker.listener.name": "SASL_SSL",
            "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:SSL",
            "sasl.enabled.mechanisms": SCRAM_MECHANISM,
            "sasl.mechanism.inter.broker.protocol": SCRAM_MECHANISM,
            # The broker's own client side of the inter-broker listener (transaction markers).
            f"listener.name.sasl_ssl.{SCRAM_MECHANISM.lower()}.sasl.jaas.config":
                f'{SCRAM_LOGIN} required username="{ADMIN_PRINCIPAL}" password="{admin_password}";',
            "ssl.keystore.type": "PEM",
            "ssl.keystore.certificate.chain": broker.chain_pem(),
            "ssl.keystore.key": broker.key_pem(),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.certificates": ca.cert_path.read_text(),
            # Only a certificate of the CA gets onto the controller listener: the broker's own.
            "listener.name.controller.ssl.client.auth": "required",
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": f"User:{ADMIN_PRINCIPAL};User:CN={BROKER_CN}",
            "allow.everyone.if.no.acl.found": "false",
        }

    def _passwords(self) -> dict[str, str]:
        """Each principal's SCRAM password: generated once, kept in its client properties file."""
        names = (ADMIN_PRINCIPAL, *ROLES)
        if all(self.client_properties(n).exists() for n in names):
            return {n: parse_properties(self.client_properties(n).read_text())["sasl.password"] for n in names}
        self.clients_dir.mkdir(parents=True, exist_ok=True)
        out = {}
        for n in names:
            out[n] = secrets.token_urlsafe(24)  # url-safe: no ',' '=' ']' for the storage tool's syntax
            write_private_text(self.client_properties(n), "".join(f"{k}={_prop_escape(v)}\n" for k, v in {
                "bootstrap.servers": self.bootstrap,
                "security.protocol": "SASL_SSL",
                "sasl.mechanism": SCRAM_MECHANISM,
                "sasl.username": n,
                "sasl.password": out[n],
                "ssl.ca.location": str(self.ca_file),
            }.items()))
        return out

    def _write_config(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "logs").mkdir(exist_ok=True)
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "controller.listener.names": "CONTROLLER",
            **self._security_props(),
            "log.dirs": str(self.data_dir),
            # One node: every internal topic must live with a replication factor of 1, or
            # transactions and consumer groups hang waiting for replicas that never come.
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "min.insync.replicas": "1",
            "default.replication.factor": "1",
            # Flink's transactional sink asks for up to 1 h; allow it (default cap is 15 min).
            "transaction.max.timeout.ms": "3600000",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            "num.partitions": "4",
            "log.retention.hours": "168",
            "log.segment.bytes": str(64 << 20),
        }
        # Holds the dev broker's key and the admin password when secure: owner-only.
        write_private_text(self.props_file, "".join(f"{k}={_prop_escape(v)}\n" for k, v in props.items()))
        (self.home / "log4j2.properties").write_text(_LOG4J2.format(log=self.log_file))

    def _classpath(self) -> str:
        jars = sorted(self.jar_dir.glob("*.jar"))
        if not any(j.name.startswith("kafka_2.13-") for j in jars):
            raise RuntimeError(f"Kafka jars missing in {self.jar_dir}: run `make jars` first")
        return os.pathsep.join(str(j) for j in jars)

    def _java(self, main: str, *args: str, **popen) -> subprocess.Popen:
        cmd = ["java", *BROKER_HEAP.split(), "-Djava.awt.headless=true",
               f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
               f"-Dkafka.logs.dir={self.home / 'logs'}",
               "-cp", self._classpath(), main, *args]
        return subprocess.Popen(cmd, **popen)

    def _format_storage(self) -> None:
        if (self.data_dir / "meta.properties").exists():
            return
        cluster_id = new_cluster_id()
        scram: list[str] = []
        if self.secure:
            for name, password in self._passwords().items():
                scram += ["--add-scram", f"{SCRAM_MECHANISM}=[name={name},password={password}]"]
        proc = self._java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(self.props_file),
                          "--ignore-formatted", *scram,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out, _ = proc.communicate(timeout=120)
        if proc.returncode != 0:
            text = out.decode(errors="replace")
            for password in (self._passwords().values() if self.secure else ()):
                text = text.replace(password, "***")
            raise RuntimeError(f"formatting Kafka storage failed:\n{text}")
        self._mode_file.write_text(self.security + "\n")

    def up(self, topics: dict[str, dict] | None = None) -> BrokerStatus:
        """Start the broker unless it already runs, wait until it answers, create topics."""
        if not self.status().running:
            if _port_open(self.port):
                raise RuntimeError(f"port {self.port} is taken by another process; set ZEROSCAN_BOOTSTRAP "
                                   "or stop that process")
            self._write_config()
            self._format_storage()
            with open(self.home / "logs" / "stdout.log", "ab") as log:
                proc = self._java("kafka.Kafka", str(self.props_file), stdout=log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, start_new_session=True)
            self._proc = proc
            self.pid_file.write_text(str(proc.pid))
            deadline = time.monotonic() + START_TIMEOUT_S
            while not _port_open(self.port):
                if proc.poll() is not None:
                    raise RuntimeError(f"Kafka exited with {proc.returncode}; see {self.log_file}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Kafka did not listen on {self.bootstrap} within {START_TIMEOUT_S}s")
                time.sleep(0.3)
        wait_for_broker(self.client_config(), timeout_s=START_TIMEOUT_S)
        if topics:
            ensure_topics(self.client_config(), topics)
        return self.status()

    def down(self) -> bool:
        """Stop the broker cleanly (SIGTERM, then SIGKILL after a grace period)."""
        pid = self._pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            _reap(pid)
            time.sleep(0.2)
        else:
            os.kill(pid, signal.SIGKILL)
        if self._proc is not None and self._proc.pid == pid:
            self._proc.wait(timeout=STOP_TIMEOUT_S)
            self._proc = None
        self.pid_file.unlink(missing_ok=True)
        return True


    def kill(self) -> int | None:
        """Hard stop (SIGKILL, no shutdown), as a crashed host would: for fault benchmarks. The
        data stays; `up()` starts the broker again on it. Returns the pid killed."""
        pid = self._pid()
        if pid is None:
            return None
        os.kill(pid, signal.SIGKILL)
        if self._proc is not None and self._proc.pid == pid:
            self._proc.wait(timeout=STOP_TIMEOUT_S)
            self._proc = None
        else:
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while _alive(pid) and time.monotonic() < deadline:
                _reap(pid)
                time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)
        return pid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def new_cluster_id() -> str:
    """22 characters of url-safe base64 of 16 random bytes, never starting with '-' (the storage
    tool would read it as an option; Kafka's own Uuid.randomUuid avoids it the same way)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def _prop_escape(v: str) -> str:
    """A value for a Java properties file (PEM blocks span lines)."""
    return v.replace("\\", "\\\\").replace("\n", "\\n")


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


_LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = warn
logger.apache.name = org.apache.kafka
logger.apache.level = warn
"""
