"""Kafka security settings: read and checked in config, given to every client the package
builds, masked wherever they could be shown; refusals worded as one line."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import pytest

from pipeline_lib.clients import kafka as clients
from pipeline_lib.core.config import Settings
from pipeline_lib.core.errors import ConfigError
from pipeline_lib.core.secrets import mask
from pipeline_lib.home import load_settings
from pipeline_lib.local import secure

pytestmark = pytest.mark.unit

PACKAGE = Path(__file__).resolve().parents[2] / "pipeline_lib"


def scram(tmp_path: Path, **extra: str) -> dict[str, str]:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    return {
        "PIPELINE_HOME": str(tmp_path / "home"),
        "KAFKA_BOOTSTRAP_SERVERS": "kafka.example.com:9093",
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "etl",
        "KAFKA_SASL_PASSWORD": "s3cret-kafka-password",
        "KAFKA_SSL_CAFILE": str(ca),
        **extra,
    }


def test_plaintext_by_default(tmp_path):
    settings = Settings.from_env({"PIPELINE_HOME": str(tmp_path)})
    assert settings.kafka_security_protocol == "PLAINTEXT"
    assert clients.kafka_security(settings) == {"security_protocol": "PLAINTEXT"}
    assert clients.kafka_connection(settings).startswith("PLAINTEXT: not encrypted")


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL='TLS'"),
        ({"KAFKA_SASL_MECHANISM": "GSSAPI"}, "KAFKA_SASL_MECHANISM='GSSAPI'"),
        ({"KAFKA_SASL_MECHANISM": ""}, "needs KAFKA_SASL_MECHANISM"),
        ({"KAFKA_SASL_PASSWORD": ""}, "needs KAFKA_SASL_PASSWORD"),
        ({"KAFKA_SASL_USERNAME": ""}, "needs KAFKA_SASL_USERNAME"),
        ({"KAFKA_SECURITY_PROTOCOL": "SSL"}, "KAFKA_SASL_MECHANISM=SCRAM-SHA-512 is set"),
        ({"KAFKA_SSL_CAFILE": "/no/such/ca.pem"}, "KAFKA_SSL_CAFILE='/no/such/ca.pem'"),
        ({"KAFKA_SSL_KEYFILE": "{ca}"}, "KAFKA_SSL_KEYFILE is set without KAFKA_SSL_CERTFILE"),
    ],
)
def test_a_bad_security_setting_is_one_line_naming_the_variable(tmp_path, changes, named):
    env = scram(tmp_path)
    env.update({k: v.format(ca=env["KAFKA_SSL_CAFILE"]) for k, v in changes.items()})
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    message = str(caught.value)
    assert named in message and "\n" not in message
    assert "s3cret-kafka-password" not in message


def test_tls_files_without_tls_are_refused(tmp_path):
    env = scram(tmp_path, KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT")
    with pytest.raises(ConfigError, match="KAFKA_SSL_CAFILE is set but"):
        Settings.from_env(env)


def test_the_password_is_a_secret_everywhere_settings_are_shown(tmp_path):
    settings = load_settings(scram(tmp_path))
    assert settings.kafka_sasl_password == "s3cret-kafka-password"
    assert settings.public_dict()["kafka_sasl_password"] == "set"
    assert "s3cret-kafka-password" not in repr(settings)
    assert "s3cret-kafka-password" not in clients.kafka_connection(settings)
    # registered when read: masked in any message, even one not built from settings
    assert mask("login s3cret-kafka-password refused") == "login *** refused"
    assert Settings.from_env(settings.to_env()) == settings  # a child process gets it


class Recorder:
    """Stands in for a kafka-python client class: records how it was built."""

    built: ClassVar[list[dict]] = []

    def __init__(self, *args, **config) -> None:
        Recorder.built.append(config)

    def close(self, *args, **kwargs) -> None:
        pass


def test_every_kafka_client_the_package_builds_gets_the_security_settings(tmp_path, monkeypatch):
    import kafka

    for name in ("KafkaProducer", "KafkaConsumer", "KafkaAdminClient"):
        monkeypatch.setattr(kafka, name, Recorder)
    Recorder.built = []
    settings = Settings.from_env(scram(tmp_path))
    clients.kafka_producer(settings)
    clients.kafka_consumer(settings, "g")
    clients.kafka_admin(settings)
    assert len(Recorder.built) == 3
    for config in Recorder.built:
        assert config["security_protocol"] == "SASL_SSL"
        assert config["sasl_mechanism"] == "SCRAM-SHA-512"
        assert config["sasl_plain_username"] == "etl"
        assert config["sasl_plain_password"] == "s3cret-kafka-password"
        assert config["ssl_cafile"] == str(settings.kafka_ssl_cafile)


def test_no_module_builds_a_kafka_client_of_its_own():
    """clients/kafka.py is the one place: a client built elsewhere would miss the settings."""
    builders = re.compile(r"\b(KafkaProducer|KafkaConsumer|KafkaAdminClient)\(")
    elsewhere = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path != PACKAGE / "clients" / "kafka.py" and builders.search(path.read_text())
    ]
    assert elsewhere == []


def test_other_client_libraries_get_the_same_settings(tmp_path):
    settings = Settings.from_env(scram(tmp_path))
    assert clients.librdkafka_security(settings) == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "etl",
        "sasl.password": "s3cret-kafka-password",
        "ssl.ca.location": str(settings.kafka_ssl_cafile),
    }
    java = clients.java_security_properties(settings)
    assert 'username="etl"' in java["sasl.jaas.config"]
    assert java["ssl.truststore.type"] == "PEM"


def test_a_secure_home_sets_the_defaults_for_the_pipeline_user(tmp_path):
    home = tmp_path / "home"
    secure.prepare_home(home)
    settings = load_settings({"PIPELINE_HOME": str(home)})
    assert settings.kafka_security_protocol == "SASL_SSL"
    assert settings.kafka_sasl_mechanism == "SCRAM-SHA-512"
    assert settings.kafka_sasl_username == "pipeline"
    assert settings.kafka_sasl_password == secure.local_password(home, "pipeline")
    assert settings.kafka_ssl_cafile == secure.ca_file(home)
    analyst = load_settings({"PIPELINE_HOME": str(home), "KAFKA_SASL_USERNAME": "analyst"})
    assert analyst.kafka_sasl_password == secure.local_password(home, "analyst")
    assert "User:pipeline (SCRAM-SHA-512)" in clients.kafka_connection(settings)
    # what only its owner may read
    for private in ("users.json", "broker.pem"):
        assert (secure.secure_dir(home) / private).stat().st_mode & 0o077 == 0


def test_a_secure_home_gives_no_defaults_to_a_client_told_another_protocol(tmp_path):
    home = tmp_path / "home"
    secure.prepare_home(home)
    plain = load_settings({"PIPELINE_HOME": str(home), "KAFKA_SECURITY_PROTOCOL": "SSL"})
    assert plain.kafka_sasl_mechanism is None and plain.kafka_sasl_password is None
    assert plain.kafka_ssl_cafile is None  # the system CAs: the probe will say so
    secure.ca_file(home).unlink()  # a damaged home still reads (and `down --purge` runs)
    assert load_settings({"PIPELINE_HOME": str(home)}).kafka_ssl_cafile is None
    (secure.secure_dir(home) / "users.json").unlink()  # no passwords: read as plaintext
    assert load_settings({"PIPELINE_HOME": str(home)}).kafka_security_protocol == "PLAINTEXT"


def test_the_generated_passwords_are_masked_once_read(tmp_path):
    secure.prepare_home(tmp_path)
    password = secure.local_password(tmp_path, "analyst")
    assert mask(f"format failed for {password}") == "format failed for ***"


def test_the_certificate_names_both_loopback_names(tmp_path):
    from cryptography import x509

    secure.prepare_home(tmp_path)
    pem = secure.broker_pem(tmp_path).read_bytes()
    leaf = x509.load_pem_x509_certificates(pem)[0]
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    ca = x509.load_pem_x509_certificate(secure.ca_file(tmp_path).read_bytes())
    leaf.verify_directly_issued_by(ca)


def test_a_plaintext_home_is_not_turned_secure(tmp_path):
    (tmp_path / "kafka" / "data").mkdir(parents=True)
    (tmp_path / "kafka" / "data" / "meta.properties").write_text("x")
    from pipeline_lib.local import ServiceError

    with pytest.raises(ServiceError, match=r"without security.*down --purge"):
        secure.prepare_home(tmp_path)


def test_the_broker_of_a_secure_home_has_no_plaintext_client_listener(tmp_path):
    from pipeline_lib.local.kafka import broker_properties

    home = tmp_path / "home"
    secure.prepare_home(home)
    settings = load_settings({"PIPELINE_HOME": str(home)})
    properties = broker_properties(settings, tmp_path / "data")
    assert "PLAINTEXT:" not in properties.replace("SASL_PLAINTEXT", "")
    assert "listener.security.protocol.map=CLIENT:SASL_SSL,CONTROLLER:SASL_SSL" in properties
    assert "allow.everyone.if.no.acl.found=false" in properties


def test_refusals_name_the_missing_acl(tmp_path):
    from kafka.errors import (
        ClusterAuthorizationFailedError,
        GroupAuthorizationFailedError,
        KafkaError,
        TopicAuthorizationFailedError,
    )

    settings = Settings.from_env(scram(tmp_path))
    group = clients.access_denied(settings, GroupAuthorizationFailedError("sink-group"))
    assert "ALLOW READ on GROUP sink-group for User:etl" in str(group)
    bare = clients.access_denied(settings, GroupAuthorizationFailedError(), group="g1")
    assert "ALLOW READ on GROUP g1 for User:etl" in str(bare)  # kafka-python named none
    write = clients.access_denied(
        settings,
        KafkaError("Unexpected error in InitProducerIdResponse: ClusterAuthorizationFailedError"),
        "WRITE",
        "ticks",
    )
    assert "ALLOW WRITE on TOPIC ticks for User:etl" in str(write)
    create = clients.access_denied(settings, TopicAuthorizationFailedError(), "CREATE", "ticks")
    assert "ALLOW CREATE on TOPIC ticks for User:etl" in str(create)
    assert "if it exists, DESCRIBE and READ on it" in str(create)  # Kafka hides it
    cluster = clients.access_denied(settings, ClusterAuthorizationFailedError(), "DESCRIBE")
    assert "ALLOW DESCRIBE on CLUSTER kafka-cluster" in str(cluster)
    assert clients.access_denied(settings, KafkaError("broker gone")) is None
    wrapped = RuntimeError("cannot write: TopicAuthorizationFailedError")
    assert clients.access_denied(settings, wrapped) is None  # classes, not words
    for refusal in (group, write, create, cluster):
        assert "\n" not in str(refusal)


class FakeCredentials:
    def __init__(self, email: str | None = "sa@proj.iam.gserviceaccount.com") -> None:
        self.service_account_email = email
        self.token = "ya29.access-token"
        self.expiry = datetime(2030, 1, 1, tzinfo=UTC).replace(tzinfo=None)
        self.valid = True


def _part(token: str, index: int) -> str:
    piece = token.split(".")[index]
    return base64.urlsafe_b64decode(piece + "=" * (-len(piece) % 4)).decode()


def test_oauthbearer_tokens_are_what_googles_managed_kafka_reads():
    from pipeline_lib.clients.oauth import GoogleTokenProvider

    token = GoogleTokenProvider(FakeCredentials()).token()
    assert json.loads(_part(token, 0)) == {"typ": "JWT", "alg": "GOOG_OAUTH2_TOKEN"}
    claims = json.loads(_part(token, 1))
    assert claims["sub"] == "sa@proj.iam.gserviceaccount.com" and claims["iss"] == "Google"
    assert claims["exp"] > claims["iat"]
    assert _part(token, 2) == "ya29.access-token"


def test_oauthbearer_without_a_service_account_is_one_clear_line():
    from pipeline_lib.clients.oauth import google_kafka_token

    with pytest.raises(ConfigError, match="name no service account"):
        google_kafka_token(FakeCredentials(email="default"))


def test_oauthbearer_settings_give_the_client_a_token_provider(tmp_path):
    env = scram(tmp_path, KAFKA_SASL_MECHANISM="OAUTHBEARER")
    del env["KAFKA_SASL_USERNAME"], env["KAFKA_SASL_PASSWORD"]
    settings = Settings.from_env(env)
    config = clients.kafka_security(settings)
    from kafka.net.sasl.oauth import AbstractTokenProvider

    assert isinstance(config["sasl_oauth_token_provider"], AbstractTokenProvider)
    assert "sasl_plain_password" not in config
    assert settings.kafka_sasl_mechanism == "OAUTHBEARER"
