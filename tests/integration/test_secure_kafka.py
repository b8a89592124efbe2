"""The pipeline on a real Kafka broker in secure mode (``up --secure``): SASL_SSL with
SCRAM logins, the KRaft StandardAuthorizer and ACLs for three principals.

The whole flow runs over TLS with counts as strict as on the plaintext broker; the
read-only analyst cannot produce; the pipeline cannot join the analyst's group; no
port of the broker takes a plaintext or anonymous client; every refusal is one line
that never holds the password.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from pipeline_lib.clients.kafka import AccessDenied, ConnectionFailed, ensure_topic, kafka_admin
from pipeline_lib.kafka_io.consumer import SinkConsumer
from pipeline_lib.kafka_io.producer import produce, send_raw
from pipeline_lib.local import secure
from tests.helpers import (
    SteadyProducer,
    all_landed_once,
    finish,
    member,
    nothing_left,
    simulated,
    unique_dead_letters,
)


def test_the_whole_flow_over_sasl_ssl_with_two_members(secure_settings):
    settings = secure_settings.with_overrides(partitions=4)
    ensure_topic(settings, partitions=4)
    password = settings.kafka_sasl_password
    with SteadyProducer(settings, 3_000, rate=250, seed=91) as producer:
        first = member(settings)
        time.sleep(5)
        send_raw(settings, b'{"symbol": "x\'; DROP TABLE t;--", "close": "NaN"}', key=b"bad")
        second = member(settings)
    reports = [finish(first), finish(second)]
    assert sum(r["consumed"] for r in reports) >= 3_001
    assert any(r["rebalances"] >= 1 for r in reports)
    all_landed_once(settings, producer.check())
    letters = unique_dead_letters(settings)
    assert len(letters) == 1 and letters[0].key == b"bad"
    nothing_left(settings)
    for report in reports:
        assert password not in json.dumps(report)


def test_the_analyst_reads_but_cannot_write(secure_settings):
    ensure_topic(secure_settings)
    ticks = simulated(20, seed=92)
    produce(secure_settings, ticks)
    analyst = secure.as_principal(secure_settings, secure.ANALYST)

    refused = produce(analyst, simulated(5, seed=93))
    assert refused.delivered == 0
    assert f"ALLOW WRITE on TOPIC {secure_settings.topic} for User:analyst" in (
        refused.stopped_because
    )

    reader = analyst.with_overrides(consumer_group=f"analyst-{secure_settings.topic}")
    report = SinkConsumer(reader, sinks=[], create_topics=False).run(until_idle=2)
    assert report.consumed == 20

    with pytest.raises(AccessDenied, match=r"ALLOW READ on GROUP .* for User:analyst"):
        SinkConsumer(analyst, sinks=[], create_topics=False).run(until_idle=2)


def test_the_pipeline_cannot_join_the_analysts_group(secure_settings):
    ensure_topic(secure_settings)
    theirs = secure_settings.with_overrides(consumer_group=f"analyst-{secure_settings.topic}")
    with pytest.raises(AccessDenied) as refused:
        SinkConsumer(theirs, sinks=[]).run(until_idle=2)
    assert "for User:pipeline" in str(refused.value) and "GroupAuthorizationFailed" in str(
        refused.value
    )


def test_a_consumer_without_the_right_to_read_its_topic_is_told_so(secure_settings):
    """kafka-python only logs it and assigns nothing; the consumer says it in one line."""
    from kafka.admin import (
        ACL,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePattern,
        ResourceType,
        ScramMechanism,
        UserScramCredentialUpsertion,
    )

    ensure_topic(secure_settings)
    admin = kafka_admin(secure.as_principal(secure_settings, secure.ADMIN))
    try:  # a principal that may join groups but read no topic
        login = UserScramCredentialUpsertion("outsider", ScramMechanism.SCRAM_SHA_512, "x-pass-77")
        admin.alter_user_scram_credentials([login])
        group = ResourcePattern(ResourceType.GROUP, "*", ACLResourcePatternType.LITERAL)
        admin.create_acls(
            [ACL("User:outsider", "*", ACLOperation.READ, ACLPermissionType.ALLOW, group)]
        )
    finally:
        admin.close()
    outsider = secure_settings.with_overrides(
        kafka_sasl_username="outsider", kafka_sasl_password="x-pass-77"
    )
    started = time.monotonic()
    with pytest.raises(AccessDenied) as refused:
        SinkConsumer(outsider, sinks=[], create_topics=False).run(until_idle=60)
    topic = secure_settings.topic
    assert f"the ACL missing is ALLOW READ on TOPIC {topic} for User:outsider" in str(refused.value)
    assert time.monotonic() - started < 30  # not the idle wait: told at once


def test_no_port_takes_a_plaintext_or_anonymous_client(secure_kafka):
    ports = [secure_kafka.kafka_port, *secure_kafka.controller_ports]
    for port in ports:
        at = secure_kafka.with_overrides(kafka_bootstrap_servers=f"127.0.0.1:{port}")
        plaintext = at.with_overrides(
            kafka_security_protocol="PLAINTEXT", kafka_sasl_mechanism=None, kafka_ssl_cafile=None
        )
        with pytest.raises(ConnectionFailed, match="speaks TLS and this client PLAINTEXT"):
            kafka_admin(plaintext, timeout_s=2)
        anonymous = at.with_overrides(kafka_security_protocol="SSL", kafka_sasl_mechanism=None)
        with pytest.raises(ConnectionFailed, match="asks for a SASL login"):
            kafka_admin(anonymous, timeout_s=2)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"kafka_sasl_password": "wrong-password-123"}, "refused the login of user 'pipeline'"),
        ({"kafka_sasl_username": "mallory"}, "refused the login of user 'mallory'"),
        ({"kafka_sasl_mechanism": "SCRAM-SHA-256"}, "does not offer the SASL mechanism"),
        ({"kafka_ssl_cafile": "other-ca"}, "TLS certificate this client does not trust"),
    ],
)
def test_a_refused_client_gets_one_line_without_the_password(
    secure_kafka, tmp_path, change, expected
):
    if change.get("kafka_ssl_cafile") == "other-ca":
        other = tmp_path / "other-ca.pem"
        other.write_text(secure._certificates()[0])
        change = {"kafka_ssl_cafile": other}
    started = time.monotonic()
    with pytest.raises(ConnectionFailed) as refused:
        kafka_admin(secure_kafka.with_overrides(**change), timeout_s=2)
    message = str(refused.value)
    assert expected in message and "\n" not in message
    for secret in ("wrong-password-123", secure_kafka.kafka_sasl_password):
        assert secret not in message
    assert time.monotonic() - started < 30  # no hang


def _cli(settings, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline_lib", *args],
        env={**os.environ, **settings.to_env(), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_command_line_says_who_connects_and_never_shows_a_password(secure_settings):
    password = secure_settings.kafka_sasl_password
    shown = _cli(secure_settings, "status", "--json")
    assert shown.returncode == 0, shown.stderr[-2000:]
    document = json.loads(shown.stdout)
    assert document["kafka_connection"].startswith("SASL_SSL: encrypted")
    assert "as User:pipeline (SCRAM-SHA-512)" in document["kafka_connection"]
    assert document["settings"]["kafka_sasl_password"] == "set"
    assert password not in shown.stdout + shown.stderr

    refused = _cli(
        secure_settings,
        "produce",
        "--max-records",
        "1",
        "--quiet",
        KAFKA_SASL_PASSWORD="wrong-password-456",
    )
    assert refused.returncode == 2
    assert "Traceback" not in refused.stderr
    assert "refused the login of user 'pipeline'" in refused.stderr
    assert "wrong-password-456" not in refused.stdout + refused.stderr


def test_a_secure_client_on_a_plaintext_broker_is_told_so(settings):
    """The other way round: the test services' plaintext broker, a client set for TLS
    or for a login."""
    tls = settings.with_overrides(kafka_security_protocol="SSL")
    with pytest.raises(ConnectionFailed, match="it does not speak TLS and this client SSL"):
        kafka_admin(tls, timeout_s=2)
    login = settings.with_overrides(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="someone",
        kafka_sasl_password="a-password-1",
    )
    with pytest.raises(ConnectionFailed, match="takes no SASL login on this listener"):
        kafka_admin(login, timeout_s=2)
