"""Checks of the names and addresses configuration hands the pipeline.

Every name that later reaches Kafka, Cloud Storage, BigQuery or SQL text is checked
here, whole (``fullmatch``: not even a trailing newline slips through), before any
network call: topics and groups, bucket names, BigQuery project, dataset, table and
column identifiers, ``host:port`` lists and endpoint URLs. A bad value is one line that
names what to fix.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pipeline_lib.core.errors import ConfigError, PipelineError

# Kafka's own rule for topic names; group ids are free text, but keep them printable.
TOPIC_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,249}")
GROUP_PATTERN = re.compile(r"[A-Za-z0-9._:@/+=-]{1,255}")
# GCS bucket names: 3-63 characters (up to 222 when dotted, 63 per dot-separated part).
BUCKET_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]")
HOST_PORT_PATTERN = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})")
# Project ids: lower-case letters, digits and hyphens (local ids may be short).
PROJECT_PATTERN = re.compile(r"[a-z][a-z0-9-]{0,62}")
NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,1023}")
MAX_BROKERS = 5
# What a client may ask of Kafka's security (kafka-python's names, Kafka's own).
KAFKA_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")


class UnsafeIdentifier(PipelineError, ValueError):
    """A project, dataset or table name that is not a plain BigQuery identifier."""


def check_project(project: str) -> str:
    if not PROJECT_PATTERN.fullmatch(project):
        raise UnsafeIdentifier(
            f"GCP project id {project!r} is not a valid project id "
            "(lower-case letters, digits and hyphens, starting with a letter)"
        )
    return project


def check_name(name: str, kind: str = "table") -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise UnsafeIdentifier(
            f"BigQuery {kind} name {name!r} may hold only letters, digits and underscores "
            "(not starting with a digit)"
        )
    return name


def check_topic(name: str, variable: str) -> str:
    if not TOPIC_PATTERN.fullmatch(name) or name in {".", ".."}:
        raise ConfigError(
            f"{variable}={name!r} is not a Kafka topic name: use 1-249 of a-z A-Z 0-9 . _ -"
        )
    return name


def check_group(name: str, variable: str) -> str:
    if not GROUP_PATTERN.fullmatch(name):
        raise ConfigError(f"{variable}={name!r}: use 1-255 of a-z A-Z 0-9 . _ - : @ / + =")
    return name


def check_bucket(name: str, variable: str = "GCS_BUCKET") -> str:
    parts = name.split(".")
    valid = (
        BUCKET_PATTERN.fullmatch(name) is not None
        and ".." not in name
        and all(0 < len(p) <= 63 for p in parts)
        and (len(name) <= 63 or "." in name)
        and not name.startswith("goog")
        and "google" not in name
    )
    try:
        ipaddress.ip_address(name)
        valid = False
    except ValueError:
        pass
    if not valid:
        raise ConfigError(
            f"{variable}={name!r} is not a GCS bucket name: 3-63 of a-z 0-9 - _ . , "
            "starting and ending with a letter or digit, no '..'"
        )
    return name


def check_bootstrap(value: str) -> str:
    """A comma-separated ``host:port`` list, returned without blanks."""
    servers = [part.strip() for part in value.split(",")]
    for server in servers:
        match = HOST_PORT_PATTERN.fullmatch(server)
        if not match or not 0 < int(match.group(2)) < 65536:
            raise ConfigError(
                f"KAFKA_BOOTSTRAP_SERVERS={value!r}: {server!r} is not host:port "
                "(e.g. 127.0.0.1:9092, several separated by commas)"
            )
    return ",".join(servers)


def check_url(value: str | None, variable: str) -> str | None:
    """An ``http(s)://host:port`` endpoint (an emulator's, AlphaVantage's)."""
    if value is None:
        return None
    parsed = urlparse(value if "://" in value else f"http://{value}")
    try:
        port = parsed.port
    except ValueError:
        port = -1
    if (
        parsed.scheme not in {"http", "https"}
        or not parsed.hostname
        or port == -1
        or re.search(r"\s", value)
    ):
        raise ConfigError(
            f"{variable}={value!r} is not an http(s)://host:port URL (e.g. http://127.0.0.1:4443)"
        )
    return value


# --- readers of a variable's text: each returns the value or names the variable ---


def whole_number(low: int, high: int) -> Callable[[str, str], int]:
    def read(raw: str, name: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ConfigError(f"{name}={raw!r} is not a whole number") from None
        if not low <= value <= high:
            raise ConfigError(f"{name}={raw!r} must be between {low} and {high}")
        return value

    return read


def seconds(raw: str, name: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 1):
        raise ConfigError(f"{name}={raw!r} must be a number of seconds >= 1")
    return value


def identifier(kind: str) -> Callable[[str, str], str]:
    def read(raw: str, name: str) -> str:
        try:
            check_project(raw) if kind == "project" else check_name(raw, kind)
        except UnsafeIdentifier as error:
            raise ConfigError(f"{name}: {error}") from None
        return raw

    return read


def one_of(choices: tuple[str, ...]) -> Callable[[str, str], str]:
    def read(raw: str, name: str) -> str:
        value = raw.strip().upper()
        if value not in choices:
            raise ConfigError(f"{name}={raw!r}: use one of {', '.join(choices)}")
        return value

    return read


def existing_file(raw: str, name: str) -> Path:
    path = Path(raw).expanduser()
    if not path.is_file():
        raise ConfigError(f"{name}={raw!r}: no such file")
    return path.resolve()


def check_brokers(value: int, variable: str = "PIPELINE_BROKERS") -> int:
    """1, or 3 to MAX_BROKERS: the local cluster sizes that make sense on one machine."""
    if value < 1:
        raise ConfigError(f"{variable}={value}: a Kafka cluster needs at least 1 broker")
    if value == 2:
        raise ConfigError(
            f"{variable}=2: two KRaft controllers need both up to keep a majority, so losing "
            "either stops the cluster, no better than 1. Use 3, the smallest cluster that "
            "keeps running with a broker down, or 1."
        )
    if value > MAX_BROKERS:
        raise ConfigError(
            f"{variable}={value}: more brokers than one machine should run (each is a JVM "
            f"with a 512 MB heap). Use 3 (up to {MAX_BROKERS}); outgrow one machine with a "
            "real cluster (PIPELINE_TARGET=cloud)."
        )
    return value


def check_kafka_security(values: Mapping[str, Any]) -> None:
    """The security settings must make one coherent client: a mechanism exactly when the
    protocol is SASL, credentials for the mechanisms that take them."""
    protocol, mechanism = values["kafka_security_protocol"], values["kafka_sasl_mechanism"]
    if protocol.startswith("SASL") and not mechanism:
        raise ConfigError(
            f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_MECHANISM "
            f"({', '.join(KAFKA_SASL_MECHANISMS)})"
        )
    if mechanism and not protocol.startswith("SASL"):
        raise ConfigError(
            f"KAFKA_SASL_MECHANISM={mechanism} is set but KAFKA_SECURITY_PROTOCOL={protocol} "
            "uses no SASL: set it to SASL_SSL (or SASL_PLAINTEXT)"
        )
    if mechanism in {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}:
        for field, name in (
            ("kafka_sasl_username", "KAFKA_SASL_USERNAME"),
            ("kafka_sasl_password", "KAFKA_SASL_PASSWORD"),
        ):
            if not values[field]:
                raise ConfigError(f"KAFKA_SASL_MECHANISM={mechanism} needs {name}")
    tls = protocol in {"SSL", "SASL_SSL"}
    for field, name in (
        ("kafka_ssl_cafile", "KAFKA_SSL_CAFILE"),
        ("kafka_ssl_certfile", "KAFKA_SSL_CERTFILE"),
        ("kafka_ssl_keyfile", "KAFKA_SSL_KEYFILE"),
    ):
        if values[field] and not tls:
            raise ConfigError(
                f"{name} is set but KAFKA_SECURITY_PROTOCOL={protocol} uses no TLS: "
                "set it to SSL or SASL_SSL"
            )
    if values["kafka_ssl_keyfile"] and not values["kafka_ssl_certfile"]:
        raise ConfigError("KAFKA_SSL_KEYFILE is set without KAFKA_SSL_CERTFILE (mutual TLS)")


def choice(choices: tuple[str, ...]) -> Callable[[str, str], str]:
    """One of ``choices``, case and blanks aside."""

    def read(raw: str, name: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ConfigError(f"{name}={raw!r}: use one of {', '.join(choices)}")
        return value

    return read


def path(raw: str, name: str) -> Path:
    return Path(raw).expanduser().resolve()


def optional(read: Callable[[str, str], Any]) -> Callable[[str, str], Any]:
    """Empty text reads as None (an endpoint or key left unset)."""
    return lambda raw, name: read(raw, name) if raw else None


def text(raw: str, name: str) -> str:
    return raw


def is_loopback(bootstrap: str) -> bool:
    """Every server of a ``host:port`` list is this machine."""
    hosts = [part.rsplit(":", 1)[0].strip("[]") for part in bootstrap.split(",") if part]
    return all(h in {"127.0.0.1", "localhost", "::1"} for h in hosts)


def port_of_url(url: str, variable: str) -> int:
    parsed = urlparse(url if "://" in url else f"http://{url}")
    if parsed.port is None:
        raise ConfigError(f"{variable}={url!r} has no port; use e.g. http://127.0.0.1:4443")
    return parsed.port
