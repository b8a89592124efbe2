"""Shared fixtures. Tiers are marked by folder: tests/unit, tests/integration,
tests/notebooks, tests/browser.

Integration and notebook tests run against the real local Kafka broker and emulators,
started through ``pipeline_lib.local`` itself under ``.pipeline-test/`` on ports of
their own, so a developer's demo on the default ports is never touched. Every run
uses its own topic, bucket and dataset names.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline_lib import local
from pipeline_lib.core.config import Settings
from pipeline_lib.core.names import run_names
from pipeline_lib.home import load_settings

REPO = Path(__file__).resolve().parent.parent

# Ports of the test services (the demo uses 9092/9093/4443/9050/9060).
TEST_ENVIRONMENT = {
    "PIPELINE_TARGET": "local",
    "PIPELINE_HOME": str(REPO / ".pipeline-test"),
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:19092",
    "KAFKA_CONTROLLER_PORT": "19093",
    "STORAGE_EMULATOR_HOST": "http://127.0.0.1:14443",
    "BIGQUERY_EMULATOR_HOST": "http://127.0.0.1:19050",
    "BIGQUERY_EMULATOR_GRPC_PORT": "19060",
    "PIPELINE_BROKERS": "1",
}


# The three-broker cluster of the failure tests, beside the services above.
CLUSTER_HOME = REPO / ".pipeline-test-cluster"
# The broker in secure mode (SASL_SSL, SCRAM, ACLs), beside the services above.
SECURE_HOME = REPO / ".pipeline-test-secure"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        tier = Path(str(item.fspath)).relative_to(REPO / "tests").parts[0]
        if tier in {"unit", "integration", "notebooks", "browser"}:
            item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    """Settings of the test services, before per-test names."""
    env = {k: v for k, v in os.environ.items() if k not in TEST_ENVIRONMENT}
    env.update(TEST_ENVIRONMENT)
    if os.environ.get("PIPELINE_CACHE"):
        env["PIPELINE_CACHE"] = os.environ["PIPELINE_CACHE"]
    return load_settings(env)


@pytest.fixture(scope="session")
def services(base_settings: Settings) -> Iterator[Settings]:
    """The real local broker and emulators, up for the whole session.

    Reuses services left running by an earlier run; stops only what it started.
    """
    already = {s.name for s in local.status(base_settings) if s.running}
    local.up(base_settings, notify=print)
    yield base_settings
    if not already:
        local.down(base_settings)


@pytest.fixture(scope="session")
def cluster(services: Settings) -> Iterator[Settings]:
    """A real three-broker Kafka cluster (KRaft, three voters) beside the test emulators,
    started through ``pipeline_lib.local`` on first use and stopped at the end."""
    settings = services.with_overrides(
        home=CLUSTER_HOME,
        kafka_bootstrap_servers="127.0.0.1:19192",
        kafka_controller_port=19193,
        brokers=3,
    )
    already = {s.name for s in local.kafka_nodes(settings) if s.status().running}
    local.up(settings, notify=print, kafka_only=True)
    yield settings
    if not already:
        local.down(settings, kafka_only=True)


@pytest.fixture(scope="session")
def secure_kafka(services: Settings) -> Iterator[Settings]:
    """A real Kafka broker in secure mode (``up --secure``: SASL_SSL, SCRAM logins, ACLs)
    beside the test emulators, connected to as the ``pipeline`` principal; started
    through ``pipeline_lib.local`` on first use and stopped at the end."""
    from pipeline_lib.local import secure

    settings = services.with_overrides(
        home=SECURE_HOME,
        kafka_bootstrap_servers="127.0.0.1:19392",
        kafka_controller_port=19393,
        brokers=1,
    )
    already = {s.name for s in local.kafka_nodes(settings) if s.status().running}
    local.up(settings, notify=print, kafka_only=True, secure=True)
    yield secure.as_principal(settings, secure.PIPELINE)
    if not already:
        local.down(settings, kafka_only=True)


@pytest.fixture
def secure_settings(secure_kafka: Settings) -> Settings:
    """Per-test names on the secure broker."""
    return own_names(secure_kafka)


@pytest.fixture
def cluster_settings(cluster: Settings) -> Settings:
    """Per-test names on the three-broker cluster."""
    return own_names(cluster)


@pytest.fixture
def settings(services: Settings) -> Settings:
    """Per-test topic, bucket and dataset names on the shared test services."""
    return own_names(services)


@pytest.fixture
def own_bigquery(settings: Settings, tmp_path):
    """(settings, emulator): a BigQuery emulator of the test's own, which the test may
    stop and start; stopped at the end."""
    from pipeline_lib import local

    mine = settings.with_overrides(
        home=tmp_path,
        bigquery_emulator_host="http://127.0.0.1:29050",
        bigquery_emulator_grpc_port=29060,
    )
    emulator = local.BigQueryEmulator(mine)
    emulator.up()
    try:
        yield mine, emulator
    finally:
        emulator.down()


def own_names(services: Settings) -> Settings:
    """Topics, group, bucket and dataset of this test's own (``test-<token>-...``)."""
    return run_names(services, "test")
