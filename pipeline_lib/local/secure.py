"""The local Kafka in secure mode (``up --secure``): what a managed cluster asks of a
client, on loopback.

SASL_SSL listeners only (TLS with a certificate from a CA made for the home), the KRaft
``StandardAuthorizer`` with ACLs. Three principals, their passwords generated once
into the home:

* ``admin``: super user, PLAIN login; the brokers log in to each other with it.
* ``pipeline``: what the package connects as by default: produce, consume and create
  topics, its consumer groups; never a group of the analyst's.
* ``analyst``: read-only: may consume every topic in groups named ``analyst*``, may not
  produce.

``pipeline`` and ``analyst`` log in with SCRAM-SHA-512, made through the admin API
once the broker runs.

Certificates are made with ``cryptography`` (a Google-client dependency already): no
download, no ``keytool``. The CA's key is not kept: nothing else gets signed by it.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline_lib.home.files import (
    ADMIN,
    ADMIN_MECHANISM,
    ANALYST,
    MECHANISM,
    PIPELINE,
    USERS,
    ca_file,
    layout_file,
    local_password,
    recorded_secure,
    secure_dir,
    users_file,
)

if TYPE_CHECKING:
    from pipeline_lib.core.config import Settings

__all__ = ["ADMIN", "ANALYST", "MECHANISM", "PIPELINE", "ca_file", "local_password", "secure_dir"]

# The analyst's groups: the pipeline principal is denied every group with this prefix.
ANALYST_GROUP_PREFIX = "analyst"


def broker_pem(home: Path) -> Path:
    """The broker's key, certificate and CA in one PEM file (Kafka's PEM keystore)."""
    return secure_dir(home) / "broker.pem"


def write_private(path: Path, text: str | bytes) -> None:
    """Write a file only its owner may read."""
    data = text.encode() if isinstance(text, str) else text
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # a file made before, with wider rights
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)


def prepare_home(home: Path) -> None:
    """Passwords and certificates for a secure home, made once; the home recorded secure.

    Refuses a home whose Kafka was formatted without security: its storage holds no
    SCRAM users and its topics have no ACLs to speak of.
    """
    from pipeline_lib.local.process import ServiceError

    layout = layout_file(home)
    try:
        record = json.loads(layout.read_text())
    except (OSError, ValueError):
        record = None
    formatted = any(home.glob("kafka*/data/meta.properties"))
    if not recorded_secure(home) and formatted:
        raise ServiceError(
            f"{home} holds a local Kafka without security. Keep it (run `up` without "
            "--secure), or start afresh with `python -m pipeline_lib down --purge` (deletes "
            "the local topics, bucket and tables) and then `python -m pipeline_lib up "
            "--secure`, or use another PIPELINE_HOME."
        )
    folder = secure_dir(home)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    if local_password(home, ADMIN) is None:
        write_private(
            users_file(home),
            json.dumps({user: secrets.token_urlsafe(18) for user in USERS}, indent=1) + "\n",
        )
    if not broker_pem(home).exists() or not ca_file(home).exists():
        ca_pem, bundle = _certificates()
        ca_file(home).write_text(ca_pem)
        write_private(broker_pem(home), bundle)
    if isinstance(record, dict):
        record["secure"] = True
    else:
        record = {"secure": True}
    home.mkdir(parents=True, exist_ok=True)
    layout.write_text(json.dumps(record) + "\n")


def _certificates() -> tuple[str, str]:
    """(CA certificate, broker key + certificate + CA) as PEM text. The broker's name
    covers both ``localhost`` and ``127.0.0.1``: clients check it against the address
    they dial (bootstrap and advertised)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    lifetime = datetime.timedelta(days=825)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stock-pipeline local CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + lifetime)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_pem = ca_cert.public_bytes(pem).decode()
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return ca_pem, key_pem + cert.public_bytes(pem).decode() + ca_pem


def listener_properties(home: Path, port: int, controller_port: int) -> dict[str, str]:
    """server.properties lines of a secure node: SASL_SSL on every listener, ACLs on.

    The admin logs in with PLAIN, its password in this private file only; the brokers
    log in to each other and to the controllers as the admin. The other principals'
    SCRAM logins are made through the admin API once the broker runs
    (:func:`grant_acls`): a password given to Kafka's format tool would sit on its
    command line, which every user of the machine may read."""
    admin = local_password(home, ADMIN)
    plain = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="{ADMIN}" password="{admin}" user_{ADMIN}="{admin}";'
    )
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    return {
        "listeners": f"CLIENT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"CLIENT://127.0.0.1:{port}",
        "inter.broker.listener.name": "CLIENT",
        "listener.security.protocol.map": "CLIENT:SASL_SSL,CONTROLLER:SASL_SSL",
        "sasl.enabled.mechanisms": f"{MECHANISM},{ADMIN_MECHANISM}",
        "sasl.mechanism.inter.broker.protocol": ADMIN_MECHANISM,
        f"listener.name.client.{MECHANISM.lower()}.sasl.jaas.config": scram,
        "listener.name.client.plain.sasl.jaas.config": plain,
        "sasl.mechanism.controller.protocol": ADMIN_MECHANISM,
        "listener.name.controller.sasl.enabled.mechanisms": ADMIN_MECHANISM,
        "listener.name.controller.plain.sasl.jaas.config": plain,
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(broker_pem(home)),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(ca_file(home)),
        "ssl.endpoint.identification.algorithm": "https",
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": f"User:{ADMIN}",
        "allow.everyone.if.no.acl.found": "false",
    }


def as_principal(settings: Settings, user: str) -> Settings:
    """``settings`` connecting to the home's secure Kafka as ``user`` (admin, pipeline or
    analyst), with that user's generated password."""
    return settings.with_overrides(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism=ADMIN_MECHANISM if user == ADMIN else MECHANISM,
        kafka_sasl_username=user,
        kafka_sasl_password=local_password(settings.home, user),
        kafka_ssl_cafile=ca_file(settings.home),
    )


def principal_acls() -> list:
    """The rights of the pipeline and the analyst (the admin is a super user).

    The pipeline: every topic of this cluster (read, write, create, describe, delete),
    every consumer group but the analyst's (a DENY wins over an ALLOW), and creating
    topics. The analyst: read and describe topics, its own groups; nothing to write.
    """
    from kafka.admin import (
        ACL,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePattern,
        ResourceType,
    )

    def rule(user, operation, kind, name, pattern=ACLResourcePatternType.LITERAL, allow=True):
        return ACL(
            principal=f"User:{user}",
            host="*",
            operation=operation,
            permission_type=ACLPermissionType.ALLOW if allow else ACLPermissionType.DENY,
            resource_pattern=ResourcePattern(kind, name, pattern),
        )

    topic, group, cluster = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.CLUSTER
    op = ACLOperation
    pipeline_topic_rights = (op.READ, op.WRITE, op.CREATE, op.DESCRIBE, op.DELETE)
    return [
        *(rule(PIPELINE, o, topic, "*") for o in pipeline_topic_rights),
        rule(PIPELINE, op.DESCRIBE_CONFIGS, topic, "*"),
        rule(PIPELINE, op.READ, group, "*"),
        rule(PIPELINE, op.DESCRIBE, group, "*"),
        rule(PIPELINE, op.DELETE, group, "*"),
        rule(PIPELINE, op.ALL, group, ANALYST_GROUP_PREFIX, ACLResourcePatternType.PREFIXED, False),
        rule(PIPELINE, op.CREATE, cluster, "kafka-cluster"),
        rule(PIPELINE, op.DESCRIBE, cluster, "kafka-cluster"),
        rule(ANALYST, op.READ, topic, "*"),
        rule(ANALYST, op.DESCRIBE, topic, "*"),
        rule(ANALYST, op.READ, group, ANALYST_GROUP_PREFIX, ACLResourcePatternType.PREFIXED),
        rule(ANALYST, op.DESCRIBE, group, ANALYST_GROUP_PREFIX, ACLResourcePatternType.PREFIXED),
    ]


def grant_acls(settings: Settings) -> None:
    """As the admin: the pipeline's and the analyst's SCRAM logins and their ACLs
    (both upserts: a second ``up`` changes nothing)."""
    from kafka.admin import ScramMechanism, UserScramCredentialUpsertion

    from pipeline_lib.clients.kafka import kafka_admin
    from pipeline_lib.local.process import ServiceError

    mechanism = ScramMechanism[MECHANISM.replace("-", "_")]
    logins = [
        UserScramCredentialUpsertion(user, mechanism, local_password(settings.home, user))
        for user in (PIPELINE, ANALYST)
    ]
    from kafka.errors import KafkaError

    from pipeline_lib.core.errors import PipelineError

    try:
        admin = kafka_admin(as_principal(settings, ADMIN))
        try:
            answer = admin.alter_user_scram_credentials(logins)
            result = admin.create_acls(principal_acls())
        finally:
            admin.close()
    except (KafkaError, PipelineError) as error:
        raise ServiceError(
            f"The secure Kafka started but its logins and ACLs could not be set ({error}); "
            "its log says more"
        ) from None
    refused = {user: message for user, message in (answer or {}).items() if message}
    if refused:
        raise ServiceError(f"Kafka refused the local SCRAM logins: {refused}")
    failed = result.get("failed") or []
    if failed:
        raise ServiceError(f"Kafka refused the local ACLs: {failed[0]}")
