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
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from urllib.parse import urlparse

from pipeline_lib.errors import PipelineError
from pipeline_lib.sql import UnsafeIdentifier, check_name, check_project

LOCAL_HOST = "127.0.0.1"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = PROJECT_ROOT / "data"
SAMPLE_CSV = DATA_DIR / "daily_ohlcv_2000_2013.csv.gz"
KAFKA_VERSION = "4.1.1"

# Every variable the package reads, with its local default and what it is for.
# `.env.example` and the README are checked against this table by a unit test.
VARIABLES: dict[str, tuple[str, str]] = {
    "PIPELINE_TARGET": ("local", "local (start and use local services) or cloud (real Kafka/GCP)"),
    "PIPELINE_HOME": ("", "folder for local service data and logs (default: ./.pipeline)"),
    "PIPELINE_CACHE": ("", "download cache: Kafka jars (default: ~/.cache/stock-pipeline)"),
    "KAFKA_BOOTSTRAP_SERVERS": (f"{LOCAL_HOST}:9092", "Kafka bootstrap address(es)"),
    "KAFKA_CONTROLLER_PORT": ("9093", "KRaft controller port of the local broker"),
    "PIPELINE_BROKERS": (
        "1",
        "local Kafka brokers: 1, or 3-5 for a replicated cluster (unset: what `up` last ran)",
    ),
    "PIPELINE_TOPIC": ("stock-ticks", "topic the producer writes and the consumer reads"),
    "PIPELINE_DLQ_TOPIC": ("", "dead-letter topic (default: <PIPELINE_TOPIC>.dlq)"),
    "PIPELINE_NEWS_TOPIC": ("stock-news", "topic of the news stream (headlines with sentiment)"),
    "PIPELINE_NEWS_DLQ_TOPIC": (
        "",
        "dead-letter topic of the news stream (default: <news topic>.dlq)",
    ),
    "PIPELINE_PARTITIONS": ("3", "partitions when the pipeline creates its topic"),
    "PIPELINE_CONSUMER_GROUP": ("stock-pipeline-sink", "consumer group of the sink consumer"),
    "PIPELINE_DELIVERY_TIMEOUT_S": (
        "120",
        "producer: seconds a record may wait for Kafka's acknowledgement before it counts "
        "as failed",
    ),
    "GCP_PROJECT": ("local-project", "Google Cloud project id"),
    "GCS_BUCKET": ("stock-ticks-raw", "bucket for raw tick objects"),
    "BQ_DATASET": ("market_data", "BigQuery dataset"),
    "BQ_TABLE": ("ticks", "BigQuery table of ticks"),
    "BQ_NEWS_TABLE": ("news", "BigQuery table of news stories"),
    "BQ_LOCATION": ("US", "BigQuery dataset location (real GCP only)"),
    "STORAGE_EMULATOR_HOST": (f"http://{LOCAL_HOST}:4443", "GCS emulator URL (unset: real GCS)"),
    "BIGQUERY_EMULATOR_HOST": (
        f"http://{LOCAL_HOST}:9050",
        "BigQuery emulator REST URL (unset: real BigQuery)",
    ),
    "BIGQUERY_EMULATOR_GRPC_PORT": ("9060", "gRPC port of the local BigQuery emulator"),
    "ALPHAVANTAGE_API_KEY": ("", "AlphaVantage key (only for --source alphavantage)"),
    "ALPHAVANTAGE_BASE_URL": ("https://www.alphavantage.co/query", "AlphaVantage endpoint"),
}

SECRET_VARIABLES = frozenset({"ALPHAVANTAGE_API_KEY"})

MAX_BROKERS = 5
# Broker N (1-based) of a local cluster listens on base + PORT_STEP * (N - 1), and its
# controller on the controller base + PORT_STEP * (N - 1): 9092/9093, 9094/9095, ...
PORT_STEP = 2
# Where `up` records the local cluster's shape, so later commands find every broker.
KAFKA_LAYOUT_FILE = "kafka-cluster.json"


class ConfigError(PipelineError, ValueError):
    """A setting is missing or malformed; the message says which variable to fix."""


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


def _int(env: Mapping[str, str], name: str, low: int = 1, high: int = 65535) -> int:
    raw = env.get(name) or VARIABLES[name][0]
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={raw!r} must be between {low} and {high}")
    return value


def _seconds(env: Mapping[str, str], name: str) -> float:
    raw = env.get(name) or VARIABLES[name][0]
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 1):
        raise ConfigError(f"{name}={raw!r} must be a number of seconds >= 1")
    return value


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


def recorded_brokers(home: Path) -> int | None:
    """Brokers of the local cluster `up` last formatted in ``home``, if any."""
    try:
        return int(json.loads((home / KAFKA_LAYOUT_FILE).read_text())["brokers"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True)
class Settings:
    """Resolved configuration. Build it with :meth:`from_env`."""

    target: str
    home: Path
    cache_dir: Path
    kafka_bootstrap_servers: str
    kafka_controller_port: int
    topic: str
    dead_letter_topic: str
    partitions: int
    consumer_group: str
    gcp_project: str
    gcs_bucket: str
    bq_dataset: str
    bq_table: str
    bq_location: str
    storage_emulator_host: str | None
    bigquery_emulator_host: str | None
    bigquery_emulator_grpc_port: int
    alphavantage_api_key: str | None
    alphavantage_base_url: str
    delivery_timeout_s: float = 120.0
    kafka_version: str = KAFKA_VERSION
    brokers: int = 1
    news_topic: str = "stock-news"
    news_dead_letter_topic: str = "stock-news.dlq"
    bq_news_table: str = "news"

    def __post_init__(self) -> None:
        # A local cluster is reached through every broker, so a client still finds it
        # with broker 1 down; the addresses follow from the first one.
        if self.is_local and self.brokers > 1:
            ports = self.broker_ports + self.controller_ports
            if len(set(ports)) < len(ports) or max(ports) > 65535:
                raise ConfigError(
                    f"{self.brokers} local brokers take ports {self.broker_ports} (clients) and "
                    f"{self.controller_ports} (controllers), which collide or run out: set "
                    "KAFKA_CONTROLLER_PORT to the broker port + 1 (the default 9092/9093)"
                )
            object.__setattr__(self, "kafka_bootstrap_servers", ",".join(self.broker_addresses))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read settings from ``env`` (default: ``os.environ``)."""
        env = os.environ if env is None else env

        def get(name: str) -> str:
            return env.get(name) or VARIABLES[name][0]

        target = env.get("PIPELINE_TARGET", "").strip().lower()
        if not target:
            bootstrap_given = env.get("KAFKA_BOOTSTRAP_SERVERS", "")
            emulators_unset = not env.get("STORAGE_EMULATOR_HOST") and not env.get(
                "BIGQUERY_EMULATOR_HOST"
            )
            remote = bootstrap_given and not _is_loopback(bootstrap_given)
            target = "cloud" if remote and emulators_unset else "local"
        if target not in {"local", "cloud"}:
            raise ConfigError(f"PIPELINE_TARGET={target!r}: use 'local' or 'cloud'")

        if target == "local":
            storage_host: str | None = get("STORAGE_EMULATOR_HOST")
            bigquery_host: str | None = get("BIGQUERY_EMULATOR_HOST")
        else:
            storage_host = env.get("STORAGE_EMULATOR_HOST") or None
            bigquery_host = env.get("BIGQUERY_EMULATOR_HOST") or None
            if not env.get("KAFKA_BOOTSTRAP_SERVERS"):
                raise ConfigError(
                    "PIPELINE_TARGET=cloud needs KAFKA_BOOTSTRAP_SERVERS "
                    "(host:port of your cluster)"
                )

        # Every name and endpoint is checked here, before any network call, with the
        # variable to fix in the message.
        topic = check_topic(get("PIPELINE_TOPIC"), "PIPELINE_TOPIC")
        dead_letter_topic = check_topic(
            env.get("PIPELINE_DLQ_TOPIC") or f"{topic}.dlq", "PIPELINE_DLQ_TOPIC"
        )
        news_topic = check_topic(get("PIPELINE_NEWS_TOPIC"), "PIPELINE_NEWS_TOPIC")
        news_dead_letter_topic = check_topic(
            env.get("PIPELINE_NEWS_DLQ_TOPIC") or f"{news_topic}.dlq", "PIPELINE_NEWS_DLQ_TOPIC"
        )
        if len({topic, dead_letter_topic, news_topic, news_dead_letter_topic}) < 4:
            raise ConfigError(
                f"PIPELINE_TOPIC, PIPELINE_DLQ_TOPIC, PIPELINE_NEWS_TOPIC and "
                f"PIPELINE_NEWS_DLQ_TOPIC must be four different topics, got {topic!r}, "
                f"{dead_letter_topic!r}, {news_topic!r}, {news_dead_letter_topic!r}"
            )
        partitions = _int(env, "PIPELINE_PARTITIONS", 1, 10_000)
        group = get("PIPELINE_CONSUMER_GROUP")
        if not GROUP_PATTERN.fullmatch(group):
            raise ConfigError(
                f"PIPELINE_CONSUMER_GROUP={group!r}: use 1-255 of a-z A-Z 0-9 . _ - : @ / + ="
            )
        for variable, check in (
            ("GCP_PROJECT", check_project),
            ("BQ_DATASET", lambda v: check_name(v, "dataset")),
            ("BQ_TABLE", lambda v: check_name(v, "table")),
            ("BQ_NEWS_TABLE", lambda v: check_name(v, "table")),
        ):
            try:
                check(get(variable))
            except UnsafeIdentifier as error:
                raise ConfigError(f"{variable}: {error}") from None
        if get("BQ_NEWS_TABLE") in {get("BQ_TABLE"), f"{get('BQ_TABLE')}_dedup"}:
            raise ConfigError(
                f"BQ_NEWS_TABLE={get('BQ_NEWS_TABLE')!r} must differ from BQ_TABLE and its view"
            )
        check_bucket(get("GCS_BUCKET"))
        storage_host = _check_url(storage_host, "STORAGE_EMULATOR_HOST")
        bigquery_host = _check_url(bigquery_host, "BIGQUERY_EMULATOR_HOST")
        _check_url(get("ALPHAVANTAGE_BASE_URL"), "ALPHAVANTAGE_BASE_URL")
        home = Path(env.get("PIPELINE_HOME") or _default_home()).expanduser().resolve()
        if env.get("PIPELINE_BROKERS"):
            brokers = check_brokers(_int(env, "PIPELINE_BROKERS", -(2**31), 2**31))
        elif target == "local":
            brokers = recorded_brokers(home) or 1
        else:
            brokers = 1
        cache_default = Path.home() / ".cache" / "stock-pipeline"
        return cls(
            target=target,
            home=home,
            cache_dir=Path(env.get("PIPELINE_CACHE") or cache_default).expanduser().resolve(),
            kafka_bootstrap_servers=_check_bootstrap(get("KAFKA_BOOTSTRAP_SERVERS")),
            kafka_controller_port=_int(env, "KAFKA_CONTROLLER_PORT"),
            topic=topic,
            dead_letter_topic=dead_letter_topic,
            partitions=partitions,
            consumer_group=group,
            gcp_project=get("GCP_PROJECT"),
            gcs_bucket=get("GCS_BUCKET"),
            bq_dataset=get("BQ_DATASET"),
            bq_table=get("BQ_TABLE"),
            bq_location=get("BQ_LOCATION"),
            storage_emulator_host=storage_host,
            bigquery_emulator_host=bigquery_host,
            bigquery_emulator_grpc_port=_int(env, "BIGQUERY_EMULATOR_GRPC_PORT"),
            alphavantage_api_key=env.get("ALPHAVANTAGE_API_KEY") or None,
            alphavantage_base_url=get("ALPHAVANTAGE_BASE_URL"),
            delivery_timeout_s=_seconds(env, "PIPELINE_DELIVERY_TIMEOUT_S"),
            brokers=brokers,
            news_topic=news_topic,
            news_dead_letter_topic=news_dead_letter_topic,
            bq_news_table=get("BQ_NEWS_TABLE"),
        )

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
    def broker_ports(self) -> list[int]:
        """Client ports of the local brokers 1..N."""
        return [self.kafka_port + PORT_STEP * i for i in range(self.brokers)]

    @property
    def controller_ports(self) -> list[int]:
        """KRaft controller ports of the local brokers 1..N."""
        return [self.kafka_controller_port + PORT_STEP * i for i in range(self.brokers)]

    @property
    def broker_addresses(self) -> list[str]:
        host = self.kafka_bootstrap_servers.split(",")[0].rsplit(":", 1)[0]
        return [f"{host}:{port}" for port in self.broker_ports]

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
        return _port_of_url(self.storage_emulator_host, "STORAGE_EMULATOR_HOST")

    @property
    def bigquery_port(self) -> int:
        if not self.bigquery_emulator_host:
            raise ConfigError("BIGQUERY_EMULATOR_HOST is unset: no local BigQuery emulator")
        return _port_of_url(self.bigquery_emulator_host, "BIGQUERY_EMULATOR_HOST")

    def to_env(self) -> dict[str, str]:
        """Environment variables that reproduce these settings in another process."""
        env = {
            "PIPELINE_TARGET": self.target,
            "PIPELINE_HOME": str(self.home),
            "PIPELINE_CACHE": str(self.cache_dir),
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap_servers,
            "KAFKA_CONTROLLER_PORT": str(self.kafka_controller_port),
            "PIPELINE_TOPIC": self.topic,
            "PIPELINE_DLQ_TOPIC": self.dead_letter_topic,
            "PIPELINE_PARTITIONS": str(self.partitions),
            "PIPELINE_CONSUMER_GROUP": self.consumer_group,
            "GCP_PROJECT": self.gcp_project,
            "GCS_BUCKET": self.gcs_bucket,
            "BQ_DATASET": self.bq_dataset,
            "BQ_TABLE": self.bq_table,
            "BQ_LOCATION": self.bq_location,
            "STORAGE_EMULATOR_HOST": self.storage_emulator_host or "",
            "BIGQUERY_EMULATOR_HOST": self.bigquery_emulator_host or "",
            "BIGQUERY_EMULATOR_GRPC_PORT": str(self.bigquery_emulator_grpc_port),
            "ALPHAVANTAGE_BASE_URL": self.alphavantage_base_url,
            "PIPELINE_DELIVERY_TIMEOUT_S": f"{self.delivery_timeout_s:g}",
            "PIPELINE_BROKERS": str(self.brokers),
            "PIPELINE_NEWS_TOPIC": self.news_topic,
            "PIPELINE_NEWS_DLQ_TOPIC": self.news_dead_letter_topic,
            "BQ_NEWS_TABLE": self.bq_news_table,
        }
        if self.alphavantage_api_key:
            env["ALPHAVANTAGE_API_KEY"] = self.alphavantage_api_key
        return env

    def public_dict(self) -> dict[str, object]:
        """Settings safe to print or log: secrets are reduced to set / unset."""
        data = asdict(self)
        data["home"] = str(self.home)
        data["cache_dir"] = str(self.cache_dir)
        data["alphavantage_api_key"] = "set" if self.alphavantage_api_key else "unset"
        return data


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with optional field overrides."""
    settings = Settings.from_env()
    return settings.with_overrides(**overrides) if overrides else settings
