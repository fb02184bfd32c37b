"""The development Kafka broker of these settings (`zeroscan kafka up`, `make run`): a KRaft
broker from the Maven jars, its data under the state folder, on the bootstrap port."""
from __future__ import annotations

from zeroscan.settings import Settings


def dev_broker(settings: Settings, secure: bool | None = None):
    from connectors.kafka_broker import KafkaBroker

    port = int(settings.bootstrap.rsplit(":", 1)[1])
    return KafkaBroker(settings.state_dir, settings.jar_dir / "kafka-broker", port=port, secure=secure)
