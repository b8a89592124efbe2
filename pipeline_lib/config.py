"""Every endpoint, name and path the pipeline uses, read from environment variables.

One place for configuration: the rest of the package receives a :class:`Settings`
and never reads ``os.environ`` itself. Defaults point at the local services that
``python -m pipeline_lib up`` starts on 127.0.0.1, so a fresh clone needs no setup.

Target selection (``PIPELINE_TARGET``):

* ``local`` (default): unset endpoints fall back to the local broker and emulators.
* ``cloud``: Kafka is whatever ``KAFKA_BOOTSTRAP_SERVERS`` says; GCS and BigQuery are
  real Google Cloud (Application Default Credentials) unless an emulator variable is set.

When ``PIPELINE_TARGET`` is unset, giving a non-loopback ``KAFKA_BOOTSTRAP_SERVERS``
with both emulator variables unset selects ``cloud``: that is how a user outgrows
one machine without flipping an extra switch.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pipeline_lib.errors import ConfigError
from pipeline_lib.sql import UnsafeIdentifier, check_name, check_project

LOCAL_HOST = "127.0.0.1"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = PROJECT_ROOT / "data"
SAMPLE_CSV = DATA_DIR / "daily_ohlcv_2000_2013.csv.gz"

MAX_BROKERS = 5


# Kafka's own rule for topic names; group ids are free text, but keep them printable.
TOPIC_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,249}")
GROUP_PATTERN = re.compile(r"[A-Za-z0-9._:@/+=-]{1,255}")
# GCS bucket names: 3-63 characters (up to 222 when dotted, 63 per dot-separated part).
BUCKET_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]")
HOST_PORT_PATTERN = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})")


def check_topic(name: str, variable: str) -> str:
    if not TOPIC_PATTERN.fullmatch(name) or name in {".", ".."}:
        raise ConfigError(
            f"{variable}={name!r} is not a Kafka topic name: use 1-249 of a-z A-Z 0-9 . _ -"
        )
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


def _check_bootstrap(value: str) -> str:
    servers = [part.strip() for part in value.split(",")]
    for server in servers:
        match = HOST_PORT_PATTERN.fullmatch(server)
        if not match or not 0 < int(match.group(2)) < 65536:
            raise ConfigError(
                f"KAFKA_BOOTSTRAP_SERVERS={value!r}: {server!r} is not host:port "
                "(e.g. 127.0.0.1:9092, several separated by commas)"
            )
    return ",".join(servers)


def _check_url(value: str | None, variable: str) -> str | None:
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


def _default_home() -> Path:
    """Project folder when run from a checkout (editable install), else a user cache."""
    package_parent = Path(__file__).resolve().parent.parent
    if (package_parent / "pyproject.toml").is_file():
        return package_parent / ".pipeline"
    return Path.home() / ".cache" / "stock-pipeline"


def _is_loopback(bootstrap: str) -> bool:
    hosts = [part.rsplit(":", 1)[0].strip("[]") for part in bootstrap.split(",") if part]
    return all(h in {"127.0.0.1", "localhost", "::1"} for h in hosts)


def _port_of_url(url: str, variable: str) -> int:
    parsed = urlparse(url if "://" in url else f"http://{url}")
    if parsed.port is None:
        raise ConfigError(f"{variable}={url!r} has no port; use e.g. http://127.0.0.1:4443")
    return parsed.port


def _whole(low: int, high: int) -> Callable[[str, str], int]:
    def read(raw: str, name: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ConfigError(f"{name}={raw!r} is not a whole number") from None
        if not low <= value <= high:
            raise ConfigError(f"{name}={raw!r} must be between {low} and {high}")
        return value

    return read


def _seconds(raw: str, name: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 1):
        raise ConfigError(f"{name}={raw!r} must be a number of seconds >= 1")
    return value


def _identifier(kind: str) -> Callable[[str, str], str]:
    def read(raw: str, name: str) -> str:
        try:
            check_project(raw) if kind == "project" else check_name(raw, kind)
        except UnsafeIdentifier as error:
            raise ConfigError(f"{name}: {error}") from None
        return raw

    return read


def _group(raw: str, name: str) -> str:
    if not GROUP_PATTERN.fullmatch(raw):
        raise ConfigError(f"{name}={raw!r}: use 1-255 of a-z A-Z 0-9 . _ - : @ / + =")
    return raw


def _target(raw: str, name: str) -> str:
    target = raw.strip().lower()
    if target not in {"local", "cloud"}:
        raise ConfigError(f"{name}={target!r}: use 'local' or 'cloud'")
    return target


# How the consumer writes BigQuery (the sinks: pipeline_lib.kafka_io.consumer.landing_sinks).
BQ_WRITES = {
    "storage": "Storage Write API, each record once in the table itself (default)",
    "storage-at-least-once": "Storage Write API default stream: lowest latency, "
    "a record may land twice (the _dedup view hides it)",
    "load": "a load job per batch (1,500 a table a day on real BigQuery): backfills",
}


def _schema_updates(raw: str, name: str) -> str:
    from pipeline_lib.sinks.evolution import POLICIES

    policy = raw.strip().lower()
    if policy not in POLICIES:
        raise ConfigError(f"{name}={raw!r}: use one of {', '.join(POLICIES)}")
    return policy


def _bq_write(raw: str, name: str) -> str:
    mode = raw.strip().lower()
    if mode not in BQ_WRITES:
        raise ConfigError(f"{name}={raw!r}: use one of {', '.join(BQ_WRITES)}")
    return mode


def _path(raw: str, name: str) -> Path:
    return Path(raw).expanduser().resolve()


def _optional(read: Callable[[str, str], Any]) -> Callable[[str, str], Any]:
    """Empty text reads as None (an endpoint or key left unset)."""
    return lambda raw, name: read(raw, name) if raw else None


def _text(raw: str, name: str) -> str:
    return raw


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


@dataclass(frozen=True)
class Variable:
    """One environment variable: the Settings field it fills, its default, what it is
    for, and how its text is read (checked, naming the variable on a bad value).

    ``default`` may be a function of the values read before it (in table order) and
    of the environment: a name derived from another, or a default that depends on
    the target."""

    name: str
    field: str
    default: str | Callable[[dict[str, Any], Mapping[str, str]], str]
    doc: str
    read: Callable[[str, str], Any] = _text
    secret: bool = False

    def default_text(self, values: dict[str, Any], env: Mapping[str, str]) -> str:
        return self.default(values, env) if callable(self.default) else self.default

    def text(self, value: Any) -> str:
        """The value as the variable's text (what :meth:`Settings.to_env` writes)."""
        if value is None:
            return ""
        return f"{value:.17g}" if isinstance(value, float) else str(value)


def _auto_target(values: dict[str, Any], env: Mapping[str, str]) -> str:
    """``cloud`` when a non-loopback broker is given and no emulator is, else ``local``."""
    bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS", "")
    emulators = env.get("STORAGE_EMULATOR_HOST") or env.get("BIGQUERY_EMULATOR_HOST")
    return "cloud" if bootstrap and not _is_loopback(bootstrap) and not emulators else "local"


def _local_only(url: str) -> Callable[[dict[str, Any], Mapping[str, str]], str]:
    """An emulator's default: the local one for ``local``, none (real GCP) for ``cloud``."""
    return lambda values, env: url if values["target"] == "local" else ""


def _default_brokers(values: dict[str, Any], env: Mapping[str, str]) -> str:
    """What `up` last ran in the home folder (local), else one broker."""
    from pipeline_lib.local.layout import recorded_brokers

    recorded = recorded_brokers(values["home"]) if values["target"] == "local" else None
    try:
        return str(check_brokers(recorded)) if recorded is not None else "1"
    except ConfigError:  # a layout file edited by hand: not a reason to stop every command
        return "1"


def _brokers(raw: str, name: str) -> int:
    return check_brokers(_whole(-(2**31), 2**31)(raw, name), name)


_PORT = _whole(1, 65535)

# What a client may ask of Kafka's security (kafka-python's names, Kafka's own).
KAFKA_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")


def _one_of(choices: tuple[str, ...]) -> Callable[[str, str], str]:
    def read(raw: str, name: str) -> str:
        value = raw.strip().upper()
        if value not in choices:
            raise ConfigError(f"{name}={raw!r}: use one of {', '.join(choices)}")
        return value

    return read


def _existing_file(raw: str, name: str) -> Path:
    path = Path(raw).expanduser()
    if not path.is_file():
        raise ConfigError(f"{name}={raw!r}: no such file")
    return path.resolve()


def _is_secure_home(values: dict[str, Any]) -> bool:
    """A home made by `up --secure` whose passwords are still there (a damaged one
    reads as plaintext, so every command, `up --secure` and `down --purge` included,
    still runs)."""
    from pipeline_lib.local.secure import ADMIN, local_password, recorded_secure

    home = values["home"]
    return (
        values["target"] == "local"
        and recorded_secure(home)
        and local_password(home, ADMIN) is not None
    )


def _default_protocol(values: dict[str, Any], env: Mapping[str, str]) -> str:
    """SASL_SSL on a home made by `up --secure`, else PLAINTEXT."""
    return "SASL_SSL" if _is_secure_home(values) else "PLAINTEXT"


def _on_secure_home(values: dict[str, Any]) -> bool:
    """The home is secure and the client uses its protocol: the home's own defaults
    apply (a client told to use another protocol gets none of them)."""
    return values["kafka_security_protocol"] == "SASL_SSL" and _is_secure_home(values)


def _default_mechanism(values: dict[str, Any], env: Mapping[str, str]) -> str:
    from pipeline_lib.local.secure import MECHANISM

    return MECHANISM if _on_secure_home(values) else ""


def _default_user(values: dict[str, Any], env: Mapping[str, str]) -> str:
    from pipeline_lib.local.secure import PIPELINE

    return PIPELINE if _on_secure_home(values) and values["kafka_sasl_mechanism"] else ""


def _secure_home_ca(values: dict[str, Any], env: Mapping[str, str]) -> str:
    """On a secure local home: the CA that `up --secure` made for it (if it is there:
    a home whose files were removed still starts, and `down --purge` still runs)."""
    from pipeline_lib.local.secure import ca_file

    ca = ca_file(values["home"])
    return str(ca) if _on_secure_home(values) and ca.is_file() else ""


def _local_password(values: dict[str, Any], env: Mapping[str, str]) -> str:
    """On a secure local home: the generated password of KAFKA_SASL_USERNAME."""
    from pipeline_lib.local.secure import local_password

    user = values["kafka_sasl_username"]
    return (local_password(values["home"], user) or "") if user and _on_secure_home(values) else ""


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


# Every variable the package reads, in the order they are read: the one declaration
# from which Settings.from_env, Settings.to_env and the defaults follow.
# `.env.example` and the README are checked against this table by a unit test.
VARIABLES: dict[str, Variable] = {
    v.name: v
    for v in (
        Variable(
            "PIPELINE_TARGET",
            "target",
            _auto_target,
            "local (start and use local services) or cloud (real Kafka/GCP); unset: local, "
            "or cloud when KAFKA_BOOTSTRAP_SERVERS is remote and no emulator is set",
            _target,
        ),
        Variable(
            "PIPELINE_HOME",
            "home",
            lambda values, env: str(_default_home()),
            "folder for local service data and logs (default: ./.pipeline)",
            _path,
        ),
        Variable(
            "PIPELINE_CACHE",
            "cache_dir",
            lambda values, env: str(Path.home() / ".cache" / "stock-pipeline"),
            "download cache: Kafka jars (default: ~/.cache/stock-pipeline)",
            _path,
        ),
        Variable(
            "KAFKA_BOOTSTRAP_SERVERS",
            "kafka_bootstrap_servers",
            f"{LOCAL_HOST}:9092",
            "Kafka bootstrap address(es)",
            lambda raw, name: _check_bootstrap(raw),
        ),
        Variable(
            "KAFKA_CONTROLLER_PORT",
            "kafka_controller_port",
            "9093",
            "KRaft controller port of the local broker",
            _PORT,
        ),
        Variable(
            "PIPELINE_BROKERS",
            "brokers",
            _default_brokers,
            "local Kafka brokers: 1, or 3-5 for a replicated cluster (unset: what `up` last ran)",
            _brokers,
        ),
        Variable(
            "KAFKA_SECURITY_PROTOCOL",
            "kafka_security_protocol",
            _default_protocol,
            "how clients reach Kafka: " + " | ".join(KAFKA_SECURITY_PROTOCOLS) + " (unset: "
            "PLAINTEXT, or SASL_SSL on a home started with `up --secure`)",
            _one_of(KAFKA_SECURITY_PROTOCOLS),
        ),
        Variable(
            "KAFKA_SASL_MECHANISM",
            "kafka_sasl_mechanism",
            _default_mechanism,
            "SASL mechanism: " + " | ".join(KAFKA_SASL_MECHANISMS) + " (OAUTHBEARER: a "
            "token from Application Default Credentials, for Google's managed Kafka)",
            _optional(_one_of(KAFKA_SASL_MECHANISMS)),
        ),
        Variable(
            "KAFKA_SASL_USERNAME",
            "kafka_sasl_username",
            _default_user,
            "SASL user (PLAIN, SCRAM) (unset on a secure local home: pipeline)",
            _optional(_text),
        ),
        Variable(
            "KAFKA_SASL_PASSWORD",
            "kafka_sasl_password",
            _local_password,
            "SASL password or API secret (unset on a secure local home: the user's "
            "generated password)",
            _optional(_text),
            secret=True,
        ),
        Variable(
            "KAFKA_SSL_CAFILE",
            "kafka_ssl_cafile",
            _secure_home_ca,
            "CA certificate(s) that sign the brokers' certificates (unset: the system's "
            "trusted CAs, or the secure local home's own CA)",
            _optional(_existing_file),
        ),
        Variable(
            "KAFKA_SSL_CERTFILE",
            "kafka_ssl_certfile",
            "",
            "client certificate for mutual TLS (PEM)",
            _optional(_existing_file),
        ),
        Variable(
            "KAFKA_SSL_KEYFILE",
            "kafka_ssl_keyfile",
            "",
            "private key of the client certificate (PEM, unencrypted)",
            _optional(_existing_file),
        ),
        Variable(
            "PIPELINE_TOPIC",
            "topic",
            "stock-ticks",
            "topic the producer writes and the consumer reads",
            check_topic,
        ),
        Variable(
            "PIPELINE_DLQ_TOPIC",
            "dead_letter_topic",
            lambda values, env: f"{values['topic']}.dlq",
            "dead-letter topic (default: <PIPELINE_TOPIC>.dlq)",
            check_topic,
        ),
        Variable(
            "PIPELINE_NEWS_TOPIC",
            "news_topic",
            "stock-news",
            "topic of the news stream (headlines with sentiment)",
            check_topic,
        ),
        Variable(
            "PIPELINE_NEWS_DLQ_TOPIC",
            "news_dead_letter_topic",
            lambda values, env: f"{values['news_topic']}.dlq",
            "dead-letter topic of the news stream (default: <news topic>.dlq)",
            check_topic,
        ),
        Variable(
            "PIPELINE_PARTITIONS",
            "partitions",
            "3",
            "partitions when the pipeline creates its topic",
            _whole(1, 10_000),
        ),
        Variable(
            "PIPELINE_CONSUMER_GROUP",
            "consumer_group",
            "stock-pipeline-sink",
            "consumer group of the sink consumer",
            _group,
        ),
        Variable(
            "PIPELINE_DELIVERY_TIMEOUT_S",
            "delivery_timeout_s",
            "120",
            "producer: seconds a record may wait for Kafka's acknowledgement before it "
            "counts as failed",
            _seconds,
        ),
        Variable(
            "GCP_PROJECT",
            "gcp_project",
            "local-project",
            "Google Cloud project id",
            _identifier("project"),
        ),
        Variable(
            "GCS_BUCKET",
            "gcs_bucket",
            "stock-ticks-raw",
            "bucket for raw tick objects",
            check_bucket,
        ),
        Variable(
            "BQ_DATASET", "bq_dataset", "market_data", "BigQuery dataset", _identifier("dataset")
        ),
        Variable("BQ_TABLE", "bq_table", "ticks", "BigQuery table of ticks", _identifier("table")),
        Variable(
            "BQ_NEWS_TABLE",
            "bq_news_table",
            "news",
            "BigQuery table of news stories",
            _identifier("table"),
        ),
        Variable("BQ_LOCATION", "bq_location", "US", "BigQuery dataset location (real GCP only)"),
        Variable(
            "BQ_WRITE",
            "bq_write",
            "storage",
            "how the consumer writes BigQuery: " + " | ".join(BQ_WRITES),
            _bq_write,
        ),
        Variable(
            "PIPELINE_SCHEMA_UPDATES",
            "schema_updates",
            "json",
            "fields of a newer record contract in BigQuery: json (the extra column) | add "
            "(a NULLABLE column each)",
            _schema_updates,
        ),
        Variable(
            "STORAGE_EMULATOR_HOST",
            "storage_emulator_host",
            _local_only(f"http://{LOCAL_HOST}:4443"),
            "GCS emulator URL (unset: real GCS)",
            _optional(_check_url),
        ),
        Variable(
            "BIGQUERY_EMULATOR_HOST",
            "bigquery_emulator_host",
            _local_only(f"http://{LOCAL_HOST}:9050"),
            "BigQuery emulator REST URL (unset: real BigQuery)",
            _optional(_check_url),
        ),
        Variable(
            "BIGQUERY_EMULATOR_GRPC_PORT",
            "bigquery_emulator_grpc_port",
            "9060",
            "gRPC port of the local BigQuery emulator",
            _PORT,
        ),
        Variable(
            "ALPHAVANTAGE_API_KEY",
            "alphavantage_api_key",
            "",
            "AlphaVantage key (only for --source alphavantage)",
            _optional(_text),
            secret=True,
        ),
        Variable(
            "ALPHAVANTAGE_BASE_URL",
            "alphavantage_base_url",
            "https://www.alphavantage.co/query",
            "AlphaVantage endpoint",
            _check_url,
        ),
    )
}
SECRET_VARIABLES = frozenset(v.name for v in VARIABLES.values() if v.secret)


@dataclass(frozen=True)
class Settings:
    """What the environment says (one field per variable of :data:`VARIABLES`), read
    and checked by :meth:`from_env` before any network call. Names of each stream's
    topic, group and table are derived by :func:`pipeline_lib.routes.route`; the local
    cluster's ports and replication by :mod:`pipeline_lib.local.layout`."""

    target: str
    home: Path
    cache_dir: Path
    kafka_bootstrap_servers: str
    kafka_controller_port: int
    brokers: int
    kafka_security_protocol: str
    kafka_sasl_mechanism: str | None
    kafka_sasl_username: str | None
    kafka_sasl_password: str | None
    kafka_ssl_cafile: Path | None
    kafka_ssl_certfile: Path | None
    kafka_ssl_keyfile: Path | None
    topic: str
    dead_letter_topic: str
    news_topic: str
    news_dead_letter_topic: str
    partitions: int
    consumer_group: str
    delivery_timeout_s: float
    gcp_project: str
    gcs_bucket: str
    bq_dataset: str
    bq_table: str
    bq_news_table: str
    bq_location: str
    bq_write: str
    schema_updates: str
    storage_emulator_host: str | None
    bigquery_emulator_host: str | None
    bigquery_emulator_grpc_port: int
    alphavantage_api_key: str | None
    alphavantage_base_url: str

    def __post_init__(self) -> None:
        from pipeline_lib.secrets import register_secret

        for variable in VARIABLES.values():  # masked in every message from now on
            if variable.secret:
                register_secret(getattr(self, variable.field))
        # A local cluster is reached through every broker, so a client still finds it
        # with broker 1 down; the addresses follow from the first one.
        if self.is_local and self.brokers > 1:
            from pipeline_lib.local.layout import broker_addresses, check_ports

            check_ports(self)
            object.__setattr__(self, "kafka_bootstrap_servers", ",".join(broker_addresses(self)))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read settings from ``env`` (default: ``os.environ``), every value checked."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for variable in VARIABLES.values():
            raw = env.get(variable.name) or ""
            if not raw.strip():  # unset, empty or blank: the default
                raw = variable.default_text(values, env)
            values[variable.field] = variable.read(raw, variable.name)
        check_kafka_security(values)
        if values["target"] == "cloud" and not env.get("KAFKA_BOOTSTRAP_SERVERS"):
            raise ConfigError(
                "PIPELINE_TARGET=cloud needs KAFKA_BOOTSTRAP_SERVERS (host:port of your cluster)"
            )
        topics = [values[f] for f in ("topic", "dead_letter_topic", "news_topic")]
        topics.append(values["news_dead_letter_topic"])
        if len(set(topics)) < 4:
            raise ConfigError(
                "PIPELINE_TOPIC, PIPELINE_DLQ_TOPIC, PIPELINE_NEWS_TOPIC and "
                "PIPELINE_NEWS_DLQ_TOPIC must be four different topics, got "
                + ", ".join(repr(t) for t in topics)
            )
        table = values["bq_table"]
        if values["bq_news_table"] in {table, f"{table}_dedup"}:
            raise ConfigError(
                f"BQ_NEWS_TABLE={values['bq_news_table']!r} must differ from BQ_TABLE and its view"
            )
        return cls(**values)

    def __repr__(self) -> str:
        """Secrets as set / unset, as in :meth:`public_dict`: a notebook that shows
        the settings never shows a key."""
        shown = ", ".join(f"{name}={value!r}" for name, value in self.public_dict().items())
        return f"Settings({shown})"

    def with_overrides(self, **changes: object) -> Settings:
        """A copy with some fields changed (tests use their own names this way)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    # --- derived values -------------------------------------------------------------

    @property
    def is_local(self) -> bool:
        return self.target == "local"

    @property
    def kafka_port(self) -> int:
        first = self.kafka_bootstrap_servers.split(",")[0]
        try:
            return int(first.rsplit(":", 1)[1])
        except (IndexError, ValueError):
            raise ConfigError(
                f"KAFKA_BOOTSTRAP_SERVERS={self.kafka_bootstrap_servers!r} must be host:port"
            ) from None

    @property
    def gcs_port(self) -> int:
        if not self.storage_emulator_host:
            raise ConfigError("STORAGE_EMULATOR_HOST is unset: no local GCS emulator to start")
        return _port_of_url(self.storage_emulator_host, "STORAGE_EMULATOR_HOST")

    @property
    def bigquery_port(self) -> int:
        if not self.bigquery_emulator_host:
            raise ConfigError("BIGQUERY_EMULATOR_HOST is unset: no local BigQuery emulator")
        return _port_of_url(self.bigquery_emulator_host, "BIGQUERY_EMULATOR_HOST")

    def to_env(self) -> dict[str, str]:
        """Environment variables that reproduce these settings in another process."""
        env = {v.name: v.text(getattr(self, v.field)) for v in VARIABLES.values()}
        return {name: text for name, text in env.items() if text or name not in SECRET_VARIABLES}

    def public_dict(self) -> dict[str, object]:
        """Settings safe to print or log: secrets are reduced to set / unset."""
        data = asdict(self)
        for variable in VARIABLES.values():
            value = data[variable.field]
            if variable.secret:
                data[variable.field] = "set" if value else "unset"
            elif isinstance(value, Path):
                data[variable.field] = str(value)
        return data


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with optional field overrides."""
    settings = Settings.from_env()
    return settings.with_overrides(**overrides) if overrides else settings
