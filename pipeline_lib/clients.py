"""Official clients for Kafka, GCS and BigQuery, built from :class:`Settings`.

The only module that knows the difference between an emulator and real Google
Cloud: with an emulator host set, clients use anonymous credentials and that
endpoint; without one, Application Default Credentials and Google's endpoints.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from pipeline_lib.config import Settings

if TYPE_CHECKING:
    from google.cloud import bigquery, storage
    from kafka import KafkaAdminClient


class ConnectionFailed(RuntimeError):
    """A service did not answer; the message says how to bring it up."""


def _hint(settings: Settings) -> str:
    if settings.is_local:
        return "Start the local services with `python -m pipeline_lib up`."
    return "Check KAFKA_BOOTSTRAP_SERVERS, your network and credentials."


def broker_unreachable(settings: Settings, error: Exception) -> ConnectionFailed:
    """The error every Kafka client raises when bootstrapping fails: what and what next."""
    return ConnectionFailed(
        f"No Kafka broker answered at {settings.kafka_bootstrap_servers} "
        f"({type(error).__name__}). {_hint(settings)}"
    )


def storage_client(settings: Settings) -> storage.Client:
    """google-cloud-storage client for the emulator or real GCS."""
    from google.cloud import storage

    if settings.storage_emulator_host:
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(
            project=settings.gcp_project,
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=settings.storage_emulator_host),
        )
    return storage.Client(project=settings.gcp_project)


def bigquery_client(settings: Settings) -> bigquery.Client:
    """google-cloud-bigquery client for the emulator or real BigQuery."""
    from google.cloud import bigquery

    if settings.bigquery_emulator_host:
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials

        return bigquery.Client(
            project=settings.gcp_project,
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=settings.bigquery_emulator_host),
        )
    return bigquery.Client(project=settings.gcp_project, location=settings.bq_location)


def kafka_admin(settings: Settings, timeout_s: float = 10.0) -> KafkaAdminClient:
    """Kafka admin client; a clear ConnectionFailed when no broker answers."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        return KafkaAdminClient(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            client_id="pipeline-admin",
            bootstrap_timeout_ms=int(timeout_s * 1000),
            request_timeout_ms=int(timeout_s * 1000) + 5000,
        )
    except KafkaError as error:
        raise broker_unreachable(settings, error) from error


def ensure_topic(
    settings: Settings,
    topic: str | None = None,
    partitions: int | None = None,
    timeout_s: float = 30.0,
) -> bool:
    """Create ``topic`` (default: the pipeline topic) if missing. True if created.

    Waits until the new topic's partitions all have a leader, so a producer can
    write to it straight away.
    """
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    topic = topic or settings.topic
    partitions = partitions or settings.partitions
    admin = kafka_admin(settings)
    try:
        if topic in admin.list_topics():
            return False
        try:
            # Locally there is one broker; on a real cluster use the broker's default.
            replication = 1 if settings.is_local else -1
            admin.create_topics([NewTopic(topic, partitions, replication_factor=replication)])
        except TopicAlreadyExistsError:
            return False
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            described = admin.describe_topics([topic])
            parts = described[0].get("partitions", []) if described else []
            if len(parts) == partitions and all(p.get("leader_id", -1) >= 0 for p in parts):
                return True
            time.sleep(0.1)
        raise ConnectionFailed(f"Topic {topic!r} was created but has no leader after {timeout_s}s")
    finally:
        admin.close()
