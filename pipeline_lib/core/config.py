"""Every endpoint, name and path the pipeline uses: :class:`Settings`, read from a
mapping of environment variables by the one table :data:`VARIABLES`.

A pure function of its mapping: no file is read, no port probed, nothing registered,
so a test or a notebook builds settings from a dict alone. The layers that feed it
live elsewhere: :func:`pipeline_lib.home.load_settings` merges what the local home
recorded (the brokers ``up`` started, a secure home's logins and CA) under the
process environment. Defaults point at the local services that ``python -m
pipeline_lib up`` starts on 127.0.0.1, so a fresh clone needs no setup.

Targets: ``PIPELINE_TARGET`` (``local`` by default; ``cloud`` when unset and a
non-loopback ``KAFKA_BOOTSTRAP_SERVERS`` comes without emulators, so a user outgrows
one machine without an extra switch) is the shorthand for ``KAFKA_TARGET``,
``GCS_TARGET`` and ``BIGQUERY_TARGET``, each ``local`` or ``cloud`` (GCS also
``off``): a student's own BigQuery beside the local broker, with no bucket.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from pipeline_lib.core.checks import (
    KAFKA_SASL_MECHANISMS,
    KAFKA_SECURITY_PROTOCOLS,
    check_bootstrap,
    check_brokers,
    check_bucket,
    check_group,
    check_kafka_security,
    check_topic,
    check_url,
    choice,
    existing_file,
    identifier,
    is_loopback,
    one_of,
    optional,
    path,
    port_of_url,
    seconds,
    text,
    whole_number,
)
from pipeline_lib.core.errors import ConfigError

LOCAL_HOST = "127.0.0.1"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = PROJECT_ROOT / "data"
SAMPLE_CSV = DATA_DIR / "daily_ohlcv_2000_2013.csv.gz"

PORT_STEP = 2


def _user_cache(env: Mapping[str, str]) -> Path:
    """``~/.cache/stock-pipeline`` of the user the mapping names (its ``HOME``)."""
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    return home / ".cache" / "stock-pipeline"


TARGETS = ("local", "cloud")
GCS_TARGETS = ("local", "cloud", "off")  # off: no raw objects (the BigQuery sandbox)
PARTITION_BY = ("event", "ingestion")


def _shorthand(values: dict[str, Any], env: Mapping[str, str]) -> str:
    """A service's target: PIPELINE_TARGET's, unless its own variable says otherwise."""
    return values["target"]


# How the consumer writes BigQuery (the sinks: pipeline_lib.sinks.landing.landing_sinks).
BQ_WRITES = {
    "storage": "Storage Write API, each record once in the table itself (default)",
    "storage-at-least-once": "Storage Write API default stream: lowest latency, "
    "a record may land twice (the _dedup view hides it)",
    "load": "a load job per batch (1,500 a table a day on real BigQuery): backfills",
}


# What becomes of the fields of a newer record contract in BigQuery
# (the sinks: pipeline_lib.sinks.bigquery.evolution).
SCHEMA_UPDATE_POLICIES = {
    "json": "fields of a newer contract go to the extra JSON column (default)",
    "add": "each becomes a NULLABLE column of its own (needs the right to alter the table)",
}


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
    read: Callable[[str, str], Any] = text
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
    return "cloud" if bootstrap and not is_loopback(bootstrap) and not emulators else "local"


def _local_only(url: str, field: str) -> Callable[[dict[str, Any], Mapping[str, str]], str]:
    """An emulator's default: the local one when its service (``field``) is ``local``,
    none (real GCP) otherwise."""
    return lambda values, env: url if values[field] == "local" else ""


def _brokers(raw: str, name: str) -> int:
    return check_brokers(whole_number(-(2**31), 2**31)(raw, name), name)


_PORT = whole_number(1, 65535)

# Every variable the package reads, in the order they are read: the one declaration
# from which Settings.from_env, Settings.to_env and the defaults follow.
# `.env.example` and the docs' configuration page (generated from it) are checked by unit tests.
VARIABLES: dict[str, Variable] = {
    v.name: v
    for v in (
        Variable(
            "PIPELINE_TARGET",
            "target",
            _auto_target,
            "local (start and use local services) or cloud (real Kafka/GCP); unset: local, "
            "or cloud when KAFKA_BOOTSTRAP_SERVERS is remote and no emulator is set",
            choice(TARGETS),
        ),
        Variable(
            "KAFKA_TARGET",
            "kafka_target",
            _shorthand,
            "where Kafka is: local (the broker `up` starts) or cloud (KAFKA_BOOTSTRAP_SERVERS)"
            " (unset: PIPELINE_TARGET)",
            choice(TARGETS),
        ),
        Variable(
            "GCS_TARGET",
            "gcs_target",
            _shorthand,
            "where raw objects go: local (the emulator), cloud (real GCS) or off (none: "
            "BigQuery alone, as in the BigQuery sandbox) (unset: PIPELINE_TARGET)",
            choice(GCS_TARGETS),
        ),
        Variable(
            "BIGQUERY_TARGET",
            "bigquery_target",
            _shorthand,
            "where the tables are: local (the emulator) or cloud (real BigQuery) (unset: "
            "PIPELINE_TARGET)",
            choice(TARGETS),
        ),
        Variable(
            "PIPELINE_HOME",
            "home",
            lambda values, env: str(_user_cache(env)),
            "folder for local service data and logs (default: ./.pipeline in a checkout, "
            "else ~/.cache/stock-pipeline)",
            path,
        ),
        Variable(
            "PIPELINE_CACHE",
            "cache_dir",
            lambda values, env: str(_user_cache(env)),
            "download cache: Kafka jars (default: ~/.cache/stock-pipeline)",
            path,
        ),
        Variable(
            "KAFKA_BOOTSTRAP_SERVERS",
            "kafka_bootstrap_servers",
            f"{LOCAL_HOST}:9092",
            "Kafka bootstrap address(es)",
            lambda raw, name: check_bootstrap(raw),
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
            "1",
            "local Kafka brokers: 1, or 3-5 for a replicated cluster (unset: what `up` last ran)",
            _brokers,
        ),
        Variable(
            "KAFKA_SECURITY_PROTOCOL",
            "kafka_security_protocol",
            "PLAINTEXT",
            "how clients reach Kafka: " + " | ".join(KAFKA_SECURITY_PROTOCOLS) + " (unset: "
            "PLAINTEXT, or SASL_SSL on a home started with `up --secure`)",
            one_of(KAFKA_SECURITY_PROTOCOLS),
        ),
        Variable(
            "KAFKA_SASL_MECHANISM",
            "kafka_sasl_mechanism",
            "",
            "SASL mechanism: " + " | ".join(KAFKA_SASL_MECHANISMS) + " (OAUTHBEARER: a "
            "token from Application Default Credentials, for Google's managed Kafka)",
            optional(one_of(KAFKA_SASL_MECHANISMS)),
        ),
        Variable(
            "KAFKA_SASL_USERNAME",
            "kafka_sasl_username",
            "",
            "SASL user (PLAIN, SCRAM) (unset on a secure local home: pipeline)",
            optional(text),
        ),
        Variable(
            "KAFKA_SASL_PASSWORD",
            "kafka_sasl_password",
            "",
            "SASL password or API secret (unset on a secure local home: the user's "
            "generated password)",
            optional(text),
            secret=True,
        ),
        Variable(
            "KAFKA_SSL_CAFILE",
            "kafka_ssl_cafile",
            "",
            "CA certificate(s) that sign the brokers' certificates (unset: the system's "
            "trusted CAs, or the secure local home's own CA)",
            optional(existing_file),
        ),
        Variable(
            "KAFKA_SSL_CERTFILE",
            "kafka_ssl_certfile",
            "",
            "client certificate for mutual TLS (PEM)",
            optional(existing_file),
        ),
        Variable(
            "KAFKA_SSL_KEYFILE",
            "kafka_ssl_keyfile",
            "",
            "private key of the client certificate (PEM, unencrypted)",
            optional(existing_file),
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
            whole_number(1, 10_000),
        ),
        Variable(
            "PIPELINE_CONSUMER_GROUP",
            "consumer_group",
            "stock-pipeline-sink",
            "consumer group of the sink consumer",
            check_group,
        ),
        Variable(
            "PIPELINE_DELIVERY_TIMEOUT_S",
            "delivery_timeout_s",
            "120",
            "producer: seconds a record may wait for Kafka's acknowledgement before it "
            "counts as failed",
            seconds,
        ),
        Variable(
            "GCP_PROJECT",
            "gcp_project",
            "local-project",
            "Google Cloud project id",
            identifier("project"),
        ),
        Variable(
            "GCS_BUCKET",
            "gcs_bucket",
            "stock-ticks-raw",
            "bucket for raw tick objects",
            check_bucket,
        ),
        Variable(
            "BQ_DATASET", "bq_dataset", "market_data", "BigQuery dataset", identifier("dataset")
        ),
        Variable("BQ_TABLE", "bq_table", "ticks", "BigQuery table of ticks", identifier("table")),
        Variable(
            "BQ_NEWS_TABLE",
            "bq_news_table",
            "news",
            "BigQuery table of news stories",
            identifier("table"),
        ),
        Variable("BQ_LOCATION", "bq_location", "US", "BigQuery dataset location (real GCP only)"),
        Variable(
            "BQ_WRITE",
            "bq_write",
            "storage",
            "how the consumer writes BigQuery: " + " | ".join(BQ_WRITES),
            choice(tuple(BQ_WRITES)),
        ),
        Variable(
            "BQ_PARTITION_BY",
            "bq_partition_by",
            "event",
            "what a new table's day partitions follow: event (the tick's time, ts) | "
            "ingestion (when it landed, ingested_at: for old events in a dataset whose "
            "partitions expire, as in the BigQuery sandbox)",
            choice(PARTITION_BY),
        ),
        Variable(
            "BQ_MAX_BYTES_BILLED",
            "bq_max_bytes_billed",
            str(1 << 30),
            "ceiling on the bytes one query may bill (BigQuery refuses, and bills nothing "
            "for, a query over it); default 1 GiB, a thousandth of the sandbox's month",
            whole_number(10 * 1 << 20, 1 << 50),
        ),
        Variable(
            "PIPELINE_SCHEMA_UPDATES",
            "schema_updates",
            "json",
            "fields of a newer record contract in BigQuery: json (the extra column) | add "
            "(a NULLABLE column each)",
            choice(tuple(SCHEMA_UPDATE_POLICIES)),
        ),
        Variable(
            "STORAGE_EMULATOR_HOST",
            "storage_emulator_host",
            _local_only(f"http://{LOCAL_HOST}:4443", "gcs_target"),
            "GCS emulator URL (unset: real GCS)",
            optional(check_url),
        ),
        Variable(
            "BIGQUERY_EMULATOR_HOST",
            "bigquery_emulator_host",
            _local_only(f"http://{LOCAL_HOST}:9050", "bigquery_target"),
            "BigQuery emulator REST URL (unset: real BigQuery)",
            optional(check_url),
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
            optional(text),
            secret=True,
        ),
        Variable(
            "ALPHAVANTAGE_BASE_URL",
            "alphavantage_base_url",
            "https://www.alphavantage.co/query",
            "AlphaVantage endpoint",
            check_url,
        ),
    )
}
SECRET_VARIABLES = frozenset(v.name for v in VARIABLES.values() if v.secret)


@dataclass(frozen=True)
class Settings:
    """What the environment says (one field per variable of :data:`VARIABLES`), read
    and checked by :meth:`from_env` before any network call. Names of each stream's
    topic, group and table are derived by :func:`pipeline_lib.records.routes.route`; the local
    cluster's ports and replication by :mod:`pipeline_lib.local.layout`."""

    target: str
    kafka_target: str
    gcs_target: str
    bigquery_target: str
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
    bq_partition_by: str
    bq_max_bytes_billed: int
    schema_updates: str
    storage_emulator_host: str | None
    bigquery_emulator_host: str | None
    bigquery_emulator_grpc_port: int
    alphavantage_api_key: str | None
    alphavantage_base_url: str

    def __post_init__(self) -> None:
        # A local cluster is reached through every broker, so a client still finds it
        # with broker 1 down; the addresses follow from the first one (and from
        # ``brokers``, so a copy with another count gets its own).
        if self.is_local and self.brokers > 1:
            ports = self.broker_ports + self.controller_ports
            if len(set(ports)) < len(ports) or max(ports) > 65535:
                raise ConfigError(
                    f"{self.brokers} local brokers take ports {self.broker_ports} (clients) "
                    f"and {self.controller_ports} (controllers), which collide or run out: "
                    "set KAFKA_CONTROLLER_PORT to the broker port + 1 (the default 9092/9093)"
                )
            host = self.kafka_bootstrap_servers.split(",")[0].rsplit(":", 1)[0]
            addresses = ",".join(f"{host}:{port}" for port in self.broker_ports)
            object.__setattr__(self, "kafka_bootstrap_servers", addresses)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Settings from ``env`` alone, every value checked: the same mapping always
        gives the same settings (what the local home adds is merged into the mapping
        beforehand, by :func:`pipeline_lib.home.load_settings`)."""
        values: dict[str, Any] = {}
        for variable in VARIABLES.values():
            raw = env.get(variable.name) or ""
            if not raw.strip():  # unset, empty or blank: the default
                raw = variable.default_text(values, env)
            values[variable.field] = variable.read(raw, variable.name)
        check_kafka_security(values)
        if values["kafka_target"] == "cloud" and not env.get("KAFKA_BOOTSTRAP_SERVERS"):
            said = "KAFKA_TARGET" if (env.get("KAFKA_TARGET") or "").strip() else "PIPELINE_TARGET"
            raise ConfigError(
                f"{said}=cloud needs KAFKA_BOOTSTRAP_SERVERS (host:port of your cluster)"
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
        """Kafka is the local broker (or cluster) that ``up`` starts."""
        return self.kafka_target == "local"

    @property
    def keeps_raw_objects(self) -> bool:
        """Raw objects go to GCS (``GCS_TARGET`` is not ``off``)."""
        return self.gcs_target != "off"

    @property
    def targets(self) -> dict[str, str]:
        """Where each service is: ``local``, ``cloud`` or (GCS) ``off``."""
        return {
            "kafka": self.kafka_target,
            "gcs": self.gcs_target,
            "bigquery": self.bigquery_target,
        }

    @property
    def kafka_port(self) -> int:
        first = self.kafka_bootstrap_servers.split(",")[0]
        try:
            return int(first.rsplit(":", 1)[1])
        except (IndexError, ValueError):
            raise ConfigError(
                f"KAFKA_BOOTSTRAP_SERVERS={self.kafka_bootstrap_servers!r} must be host:port"
            ) from None

    # --- the local cluster's layout ---------------------------------------------------
    # Broker N (1-based) listens on the first port + PORT_STEP * (N - 1), its controller
    # on KAFKA_CONTROLLER_PORT + PORT_STEP * (N - 1): 9092/9093, 9094/9095, ...

    @property
    def broker_ports(self) -> list[int]:
        """Client ports of the local brokers 1..N."""
        return [self.kafka_port + PORT_STEP * i for i in range(self.brokers)]

    @property
    def controller_ports(self) -> list[int]:
        """KRaft controller ports of the local brokers 1..N."""
        return [self.kafka_controller_port + PORT_STEP * i for i in range(self.brokers)]

    @property
    def replication_factor(self) -> int:
        """Copies of each partition the pipeline's topics get on the local cluster."""
        return min(3, self.brokers)

    @property
    def min_insync_replicas(self) -> int:
        """Copies that must have a record before acks=all acknowledges it."""
        return 2 if self.replication_factor >= 3 else 1

    @property
    def gcs_port(self) -> int:
        if not self.storage_emulator_host:
            raise ConfigError("STORAGE_EMULATOR_HOST is unset: no local GCS emulator to start")
        return port_of_url(self.storage_emulator_host, "STORAGE_EMULATOR_HOST")

    @property
    def bigquery_port(self) -> int:
        if not self.bigquery_emulator_host:
            raise ConfigError("BIGQUERY_EMULATOR_HOST is unset: no local BigQuery emulator")
        return port_of_url(self.bigquery_emulator_host, "BIGQUERY_EMULATOR_HOST")

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
