"""The local Kafka cluster's layout: which ports each broker takes, how many copies
of a partition it keeps, and the file in which `up` records the cluster's shape.

Settings hold what the environment says (the first broker's port, the controller
port, how many brokers); everything here follows from them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

from pipeline_lib.errors import ConfigError


class Settings(Protocol):
    """What the layout needs of :class:`pipeline_lib.config.Settings` (which reads its
    default broker count and its brokers' addresses from here: no import back)."""

    kafka_bootstrap_servers: str
    kafka_controller_port: int
    brokers: int

    @property
    def kafka_port(self) -> int: ...


# Broker N (1-based) of a local cluster listens on base + PORT_STEP * (N - 1), and its
# controller on the controller base + PORT_STEP * (N - 1): 9092/9093, 9094/9095, ...
PORT_STEP = 2
# Where `up` records the local cluster's shape, so later commands find every broker.
KAFKA_LAYOUT_FILE = "kafka-cluster.json"


def recorded_brokers(home: Path) -> int | None:
    """Brokers of the local cluster `up` last formatted in ``home``, if any."""
    try:
        return int(json.loads((home / KAFKA_LAYOUT_FILE).read_text())["brokers"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def broker_ports(settings: Settings) -> list[int]:
    """Client ports of the local brokers 1..N."""
    return [settings.kafka_port + PORT_STEP * i for i in range(settings.brokers)]


def controller_ports(settings: Settings) -> list[int]:
    """KRaft controller ports of the local brokers 1..N."""
    return [settings.kafka_controller_port + PORT_STEP * i for i in range(settings.brokers)]


def broker_addresses(settings: Settings) -> list[str]:
    host = settings.kafka_bootstrap_servers.split(",")[0].rsplit(":", 1)[0]
    return [f"{host}:{port}" for port in broker_ports(settings)]


def check_ports(settings: Settings) -> None:
    """The brokers' client and controller ports must all differ and exist."""
    ports = broker_ports(settings) + controller_ports(settings)
    if len(set(ports)) < len(ports) or max(ports) > 65535:
        raise ConfigError(
            f"{settings.brokers} local brokers take ports {broker_ports(settings)} (clients) "
            f"and {controller_ports(settings)} (controllers), which collide or run out: set "
            "KAFKA_CONTROLLER_PORT to the broker port + 1 (the default 9092/9093)"
        )


def replication_factor(settings: Settings) -> int:
    """Copies of each partition the pipeline's topics get on the local cluster."""
    return min(3, settings.brokers)


def min_insync_replicas(settings: Settings) -> int:
    """Copies that must have a record before acks=all acknowledges it."""
    return 2 if replication_factor(settings) >= 3 else 1
