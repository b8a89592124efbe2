"""Kafka clients (producer, consumer, admin) built from :class:`Settings`, the one place
they are built: every client gets the same security settings and timeouts, and a
broker that refuses or does not answer becomes one line that says why."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from pipeline_lib.core.config import Settings
from pipeline_lib.core.errors import ConfigError, PipelineError

if TYPE_CHECKING:
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

# One timeout policy for every Kafka client the pipeline builds.
BOOTSTRAP_TIMEOUT_MS = 10_000
SESSION_TIMEOUT_S = 15.0

# Producer defaults, tuned on the local broker (see bench/): large batches, a short
# linger, lz4; durable (acks=all + idempotence: a retried send is never written twice).
PRODUCER_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    "enable_idempotence": True,
    "linger_ms": 20,
    "batch_size": 256 * 1024,
    "compression_type": "lz4",
    "max_in_flight_requests_per_connection": 5,
}


def kafka_security(settings: Settings) -> dict[str, Any]:
    """The security arguments of every Kafka client the package builds (kafka-python's
    names): TLS, SASL and the credentials, from the KAFKA_SECURITY_* settings. The one
    place they are read, so no client can miss them."""
    config: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    if settings.kafka_security_protocol in {"SSL", "SASL_SSL"}:
        for option, path in (
            ("ssl_cafile", settings.kafka_ssl_cafile),
            ("ssl_certfile", settings.kafka_ssl_certfile),
            ("ssl_keyfile", settings.kafka_ssl_keyfile),
        ):
            if path is not None:
                config[option] = str(path)
    mechanism = settings.kafka_sasl_mechanism
    if mechanism == "OAUTHBEARER":
        from pipeline_lib.clients.oauth import GoogleTokenProvider

        config["sasl_mechanism"] = mechanism
        config["sasl_oauth_token_provider"] = GoogleTokenProvider()
    elif mechanism:
        config["sasl_mechanism"] = mechanism
        config["sasl_plain_username"] = settings.kafka_sasl_username
        config["sasl_plain_password"] = settings.kafka_sasl_password
    return config


def _not_for_other_clients(settings: Settings, client: str) -> None:
    if settings.kafka_sasl_mechanism == "OAUTHBEARER":
        raise ConfigError(f"KAFKA_SASL_MECHANISM=OAUTHBEARER is not offered to {client}")


def librdkafka_security(settings: Settings) -> dict[str, str]:
    """The same settings as librdkafka (confluent-kafka) names them, for the bench's
    baselines; ConfigError for OAUTHBEARER, which only kafka-python clients get here."""
    _not_for_other_clients(settings, "librdkafka (the bench's baseline)")
    properties = {"security.protocol": settings.kafka_security_protocol}
    if settings.kafka_sasl_mechanism:
        properties["sasl.mechanism"] = settings.kafka_sasl_mechanism
        properties["sasl.username"] = settings.kafka_sasl_username or ""
        properties["sasl.password"] = settings.kafka_sasl_password or ""
    for name, path in (
        ("ssl.ca.location", settings.kafka_ssl_cafile),
        ("ssl.certificate.location", settings.kafka_ssl_certfile),
        ("ssl.key.location", settings.kafka_ssl_keyfile),
    ):
        if path is not None:
            properties[name] = str(path)
    return properties


def java_security_properties(settings: Settings) -> dict[str, str]:
    """The same settings as Kafka's Java clients name them (the bench's Java baseline):
    write them to a private file, never a command line. ConfigError for what this does
    not map (OAUTHBEARER, mutual TLS)."""
    _not_for_other_clients(settings, "Kafka's Java tools (the bench's baseline)")
    if settings.kafka_ssl_certfile is not None:
        raise ConfigError("KAFKA_SSL_CERTFILE (mutual TLS) is not offered to Kafka's Java tools")
    properties = {"security.protocol": settings.kafka_security_protocol}
    mechanism = settings.kafka_sasl_mechanism
    if mechanism:
        module = (
            "org.apache.kafka.common.security.plain.PlainLoginModule"
            if mechanism == "PLAIN"
            else "org.apache.kafka.common.security.scram.ScramLoginModule"
        )

        def quoted(text: str | None) -> str:  # JAAS string syntax
            return '"' + (text or "").replace("\\", "\\\\").replace('"', '\\"') + '"'

        properties["sasl.mechanism"] = mechanism
        properties["sasl.jaas.config"] = (
            f"{module} required username={quoted(settings.kafka_sasl_username)} "
            f"password={quoted(settings.kafka_sasl_password)};"
        )
    if settings.kafka_ssl_cafile is not None:
        properties["ssl.truststore.type"] = "PEM"
        properties["ssl.truststore.location"] = str(settings.kafka_ssl_cafile)
    return properties


def kafka_connection(settings: Settings) -> str:
    """Over what and as whom the clients connect, in words (``status`` prints it)."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return "PLAINTEXT: not encrypted, no login"
    parts = [protocol + ":"]
    if protocol in {"SSL", "SASL_SSL"}:
        ca = settings.kafka_ssl_cafile
        parts.append(f"encrypted (TLS, trusting {ca if ca else 'the system CAs'})")
    else:
        parts.append("NOT encrypted")
    mechanism = settings.kafka_sasl_mechanism
    how = mechanism or ("mutual TLS" if settings.kafka_ssl_certfile else "no login")
    parts.append(f"as {principal(settings)} ({how})")
    return " ".join(parts)


class ConnectionFailed(PipelineError):
    """A service did not answer; the message says how to bring it up."""


def _hint(settings: Settings) -> str:
    if settings.is_local:
        return "Start the local services with `python -m pipeline_lib up`."
    return "Check KAFKA_BOOTSTRAP_SERVERS, your network and credentials."


class AccessDenied(PipelineError):
    """Kafka authenticated the client and refused it a right: the message names the ACL
    that is missing."""


def principal(settings: Settings) -> str:
    """Who the clients are to Kafka's authorizer, as ACLs name it."""
    mechanism = settings.kafka_sasl_mechanism
    if mechanism == "OAUTHBEARER":
        return "User:<the service account of Application Default Credentials>"
    if mechanism:
        return f"User:{settings.kafka_sasl_username}"
    if settings.kafka_ssl_certfile:
        return f"User:<the subject of {settings.kafka_ssl_certfile}>"
    return "User:ANONYMOUS"


def access_denied(
    settings: Settings,
    error: BaseException,
    operation: str = "READ",
    topic: str = "",
    group: str = "",
) -> AccessDenied | None:
    """The one-line refusal for a Kafka authorization error; None for any other error.

    ``operation``, ``topic`` and ``group`` say what the caller was doing (``WRITE`` to
    a topic, ``CREATE`` it, ``READ`` it in a group), which the error often does not."""
    from kafka.errors import (
        ClusterAuthorizationFailedError,
        GroupAuthorizationFailedError,
        KafkaError,
        TopicAuthorizationFailedError,
    )

    who = principal(settings)
    on_topic = f"TOPIC {topic or '<topic>'}"
    if isinstance(error, GroupAuthorizationFailedError):
        named = str(error).rsplit(": ", 1)[-1].strip()  # kafka-python adds it, or not
        group = group or (named if named and not named.endswith("Error") else "<group>")
        return AccessDenied(
            f"Kafka refused {who} the consumer group {group!r} (GroupAuthorizationFailed): "
            f"the ACL missing is ALLOW READ on GROUP {group} for {who}, or use a group "
            "this principal may join"
        )
    # A producer refused its id fails every send with a plain KafkaError naming it.
    from_init = type(error) is KafkaError and "ClusterAuthorizationFailed" in str(error)
    if from_init or (isinstance(error, ClusterAuthorizationFailedError) and operation == "WRITE"):
        return AccessDenied(
            f"Kafka refused {who} a producer (ClusterAuthorizationFailed on InitProducerId: "
            f"it may write no topic): the ACL missing is ALLOW WRITE on {on_topic} for {who}"
        )
    if isinstance(error, ClusterAuthorizationFailedError):
        return AccessDenied(
            f"Kafka refused {who} {operation} on the cluster (ClusterAuthorizationFailed): "
            f"the ACL missing is ALLOW {operation} on CLUSTER kafka-cluster for {who}"
        )
    if isinstance(error, TopicAuthorizationFailedError):
        # Kafka hides a topic a principal may not DESCRIBE: creating it is refused too.
        unseen = " (or, if it exists, DESCRIBE and READ on it)" if operation == "CREATE" else ""
        return AccessDenied(
            f"Kafka refused {who} {operation} on topic {topic!r} (TopicAuthorizationFailed): "
            f"the ACL missing is ALLOW {operation} on {on_topic} for {who}{unseen}"
        )
    return None


def broker_unreachable(settings: Settings, error: Exception) -> ConnectionFailed:
    """The error every Kafka client raises when bootstrapping fails: what and what next.

    A broker that answered but refused (a login, a certificate, a protocol) is told
    apart from one that did not answer by :func:`pipeline_lib.clients.probe.refusal`."""
    from pipeline_lib.clients.probe import refusal

    cause = refusal(settings, kafka_security(settings))
    if cause:
        return ConnectionFailed(cause)
    return ConnectionFailed(
        f"No Kafka broker answered at {settings.kafka_bootstrap_servers} "
        f"({type(error).__name__}). {_hint(settings)}"
    )


def kafka_producer(settings: Settings, **overrides: Any) -> KafkaProducer:
    """A KafkaProducer with the pipeline's defaults; ConnectionFailed if no broker answers.

    ``delivery_timeout_ms`` (how long a record may wait for an acknowledgement,
    retries included) and ``max_block_ms`` (how long ``send`` may wait for buffer
    space or metadata) both default to ``PIPELINE_DELIVERY_TIMEOUT_S``.
    """
    from kafka import KafkaProducer
    from kafka.errors import KafkaConfigurationError, KafkaError

    timeout_ms = int(settings.delivery_timeout_s * 1000)
    config = {
        **PRODUCER_DEFAULTS,
        "delivery_timeout_ms": timeout_ms,
        "max_block_ms": timeout_ms,
        "client_id": "stock-pipeline-producer",
        "bootstrap_timeout_ms": BOOTSTRAP_TIMEOUT_MS,
        **kafka_security(settings),
        **overrides,
    }
    # Kafka requires delivery timeout > linger + request timeout.
    config.setdefault(
        "request_timeout_ms",
        max(100, min(30_000, config["delivery_timeout_ms"] - config["linger_ms"] - 1)),
    )
    try:
        return KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, **config)
    except KafkaConfigurationError as error:
        raise ConnectionFailed(f"Kafka producer settings rejected: {error}") from None
    except KafkaError as error:
        raise broker_unreachable(settings, error) from error


def kafka_consumer(settings: Settings, group: str | None, **overrides: Any) -> KafkaConsumer:
    """A KafkaConsumer (no auto-commit: the pipeline commits after its sinks)."""
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    config: dict[str, Any] = {
        "group_id": group,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        # Bounded read-ahead: peak memory stays near a few batches on a large backlog,
        # and a 2 MB (compressed, up to 4 MB) record still fits one partition fetch.
        "fetch_max_bytes": 16 * 1024 * 1024,
        "max_partition_fetch_bytes": 4 * 1024 * 1024,
        "session_timeout_ms": int(SESSION_TIMEOUT_S * 1000),
        "heartbeat_interval_ms": 3_000,
        "bootstrap_timeout_ms": BOOTSTRAP_TIMEOUT_MS,
        **kafka_security(settings),
        **overrides,
    }
    try:
        return KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, **config)
    except KafkaError as error:
        raise broker_unreachable(settings, error) from error


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
            **kafka_security(settings),
        )
    except KafkaError as error:
        raise broker_unreachable(settings, error) from error


def new_topic(settings: Settings, topic: str, partitions: int) -> Any:
    """A topic as the pipeline creates it: locally replicated min(3, brokers) times,
    acknowledged by 2 copies with 3 brokers, never led by a replica that lags behind;
    on a real cluster, the cluster's own defaults."""
    from kafka.admin import NewTopic

    if not settings.is_local:
        return NewTopic(topic, partitions, replication_factor=-1)
    return NewTopic(
        topic,
        partitions,
        replication_factor=settings.replication_factor,
        topic_configs={
            "min.insync.replicas": str(settings.min_insync_replicas),
            "unclean.leader.election.enable": "false",
        },
    )


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
    from kafka.errors import InvalidReplicationFactorError, KafkaError, TopicAlreadyExistsError

    topic = topic or settings.topic
    partitions = partitions or settings.partitions
    admin = kafka_admin(settings)
    try:
        if topic in admin.list_topics():
            return False
        try:
            admin.create_topics([new_topic(settings, topic, partitions)])
        except TopicAlreadyExistsError:
            return False
        except InvalidReplicationFactorError:
            raise ConnectionFailed(
                f"Kafka could not create topic {topic!r} with "
                f"{settings.replication_factor} copies: fewer brokers are up. "
                "`python -m pipeline_lib status` shows which is down; "
                "`python -m pipeline_lib broker start N` brings it back."
            ) from None
        except KafkaError as error:
            denied = access_denied(settings, error, "CREATE", topic)
            if denied is None:
                raise
            raise denied from None
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
