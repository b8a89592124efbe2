"""Notebook 06's lesson on a secure home (``up --secure``): who connects to Kafka, over
what, with which rights, and what a refusal looks like.

Each step is something a principal tries on the real broker; the tables show what
the broker answered, in the one-line words the pipeline uses everywhere (no traceback,
no password).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pandas as pd

from pipeline_lib.clients.kafka import (
    AccessDenied,
    ConnectionFailed,
    access_denied,
    kafka_admin,
    kafka_connection,
    kafka_consumer,
)
from pipeline_lib.core.config import Settings
from pipeline_lib.core.errors import PipelineError
from pipeline_lib.local import secure


class NotSecure(PipelineError):
    """The lesson needs a home started with ``up --secure``."""


def lesson_settings(settings: Settings) -> Settings:
    """``settings`` of a secure local home; NotSecure (one line, what to run) otherwise."""
    if not (settings.is_local and secure.recorded_secure(settings.home)):
        raise NotSecure(
            f"{settings.home} is not a secure home. Run the lesson on one: "
            "`PIPELINE_HOME=.pipeline-secure KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9192 "
            "KAFKA_CONTROLLER_PORT=9193 python -m pipeline_lib up --secure`, then start "
            "JupyterLab with the same variables."
        )
    return settings


def connections(settings: Settings) -> pd.DataFrame:
    """One row per principal of the home: over what and as whom it connects."""
    rows = [
        {
            "principal": f"User:{user}",
            "connects": kafka_connection(secure.as_principal(settings, user)),
        }
        for user in (secure.PIPELINE, secure.ANALYST)
    ]
    return pd.DataFrame(rows).set_index("principal")


def rights(settings: Settings) -> pd.DataFrame:
    """The ACLs the broker enforces, as the admin reads them back from it."""
    from kafka.admin import (
        ACLFilter,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePatternFilter,
        ResourceType,
    )

    admin = kafka_admin(secure.as_principal(settings, secure.ADMIN))
    try:
        everything = ACLFilter(
            principal=None,
            host="*",
            operation=ACLOperation.ANY,
            permission_type=ACLPermissionType.ANY,
            resource_pattern=ResourcePatternFilter(
                ResourceType.ANY, None, ACLResourcePatternType.ANY
            ),
        )
        acls, _ = admin.describe_acls(everything)  # it raises a refusal itself
    finally:
        admin.close()
    rows = [
        {
            "principal": acl.principal,
            "permission": acl.permission_type.name,
            "operation": acl.operation.name,
            "resource": acl.resource_pattern.resource_type.name,
            "name": acl.resource_pattern.resource_name
            + ("*" if acl.resource_pattern.pattern_type.name == "PREFIXED" else ""),
        }
        for acl in acls
    ]
    columns = ["principal", "permission", "operation", "resource", "name"]
    frame = pd.DataFrame(rows, columns=columns).sort_values(
        columns[:1] + columns[3:] + columns[2:3]
    )
    return frame.set_index("principal")


@dataclass(frozen=True)
class Attempt:
    """What one principal tried and what the broker answered."""

    principal: str
    action: str
    allowed: bool
    answer: str


def try_write(settings: Settings, topic: str) -> Attempt:
    """Write one message to ``topic`` as ``settings``' principal."""
    from pipeline_lib.kafka_io.producer import send_raw

    who = f"User:{settings.kafka_sasl_username}"
    action = f"write to topic {topic!r}"
    try:
        send_raw(settings.with_overrides(topic=topic), b'{"lesson": 1}', key=b"lesson")
    except Exception as error:  # the broker's refusal, as the pipeline words it
        denied = access_denied(settings, error, "WRITE", topic)
        return Attempt(who, action, False, str(denied or type(error).__name__))
    return Attempt(who, action, True, "written")


def _hidden(settings: Settings, topic: str) -> bool:
    """True when the broker refuses ``settings``' principal any word about ``topic``."""
    from kafka.errors import TopicAuthorizationFailedError

    admin = kafka_admin(settings, timeout_s=5)
    try:
        described = admin.describe_topics([topic])
    finally:
        admin.close()
    return any(e.get("error_code") == TopicAuthorizationFailedError.errno for e in described)


def _refused_topic(settings: Settings, operation: str, topic: str) -> str:
    from kafka.errors import TopicAuthorizationFailedError

    return str(access_denied(settings, TopicAuthorizationFailedError(topic), operation, topic))


def try_describe(settings: Settings, topic: str) -> Attempt:
    """Ask the broker about ``topic`` (partitions, leaders): what lag and the board need."""
    who = f"User:{settings.kafka_sasl_username}"
    action = f"describe topic {topic!r}"
    if _hidden(settings, topic):
        return Attempt(who, action, False, _refused_topic(settings, "DESCRIBE", topic))
    return Attempt(who, action, True, "described")


def try_read(settings: Settings, topic: str, group: str) -> Attempt:
    """Join ``group`` and poll ``topic`` until it is assigned or refused. A topic the
    principal may not see gives kafka-python's consumer no error, only no partitions:
    the broker is then asked about the topic, as the pipeline's consumer does."""
    who = f"User:{settings.kafka_sasl_username}"
    action = f"read topic {topic!r} in group {group!r}"
    consumer = kafka_consumer(settings, group)
    try:
        consumer.subscribe([topic])
        for attempt in range(20):
            records = consumer.poll(timeout_ms=500)
            if consumer.assignment():
                count = sum(len(batch) for batch in records.values())
                return Attempt(who, action, True, f"joined; {count} record(s) in the first poll")
            if attempt == 5 and _hidden(settings, topic):
                return Attempt(who, action, False, _refused_topic(settings, "READ", topic))
        return Attempt(who, action, False, "no partition assigned within 10 s")
    except Exception as error:
        denied = access_denied(settings, error, "READ", topic, group)
        return Attempt(who, action, False, str(denied or type(error).__name__))
    finally:
        consumer.close()


def try_rights(settings: Settings, topic: str | None = None) -> pd.DataFrame:
    """The pipeline and the analyst each try to write the topic, read it in a group of
    their own, and read it in the other's group (new group names every run)."""
    from pipeline_lib.clients.kafka import ensure_topic

    topic = topic or settings.topic
    run = uuid.uuid4().hex[:6]
    pipeline, analyst = (
        secure.as_principal(settings, secure.PIPELINE),
        secure.as_principal(settings, secure.ANALYST),
    )
    ensure_topic(pipeline, topic)
    theirs = f"{secure.ANALYST_GROUP_PREFIX}-lesson-{run}"
    ours = f"lesson-{run}"
    attempts = [
        try_write(pipeline, topic),
        try_write(analyst, topic),
        try_read(pipeline, topic, ours),
        try_read(analyst, topic, theirs),
        try_read(pipeline, topic, theirs),
        try_read(analyst, topic, ours),
    ]
    return pd.DataFrame([a.__dict__ for a in attempts])


def try_logins(settings: Settings) -> pd.DataFrame:
    """Clients the broker turns away before any right is asked: a wrong password, a
    client without TLS, a client with TLS and no login."""
    cases = {
        "wrong password": {"kafka_sasl_password": "not-the-password"},
        "no TLS (PLAINTEXT)": {
            "kafka_security_protocol": "PLAINTEXT",
            "kafka_sasl_mechanism": None,
            "kafka_ssl_cafile": None,
        },
        "TLS, no login (SSL)": {"kafka_security_protocol": "SSL", "kafka_sasl_mechanism": None},
    }
    rows = []
    for case, changes in cases.items():
        try:
            kafka_admin(settings.with_overrides(**changes), timeout_s=2).close()
            answer = "accepted (this should not happen on a secure home)"
        except (ConnectionFailed, AccessDenied) as refused:
            answer = str(refused)  # masked, as every message of the package
        rows.append({"client": case, "broker's answer": answer})
    return pd.DataFrame(rows).set_index("client")
