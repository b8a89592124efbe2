"""Real Apache Kafka brokers (KRaft mode) on 127.0.0.1: one, or a small cluster.

The broker's jars come from Maven Central: Maven resolves ``kafka-pom.xml`` once
into the download cache, later starts reuse that folder. No tarball, no Docker, no
ZooKeeper: ``java -cp 'libs/*' kafka.Kafka server.properties``.

With ``PIPELINE_BROKERS=3`` each node is both broker and KRaft controller (three
voters, so the cluster keeps going with one node down), all formatted with one
cluster id that ``<home>/kafka-cluster.json`` records with the broker count.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import uuid
from importlib import resources
from pathlib import Path

from pipeline_lib.core.config import LOCAL_HOST, Settings
from pipeline_lib.home.files import layout_file, recorded_brokers
from pipeline_lib.local.process import LocalService, Notify, ServiceError, port_open
from pipeline_lib.local.secure import (
    listener_properties,
    recorded_secure,
    write_private,
)

KAFKA_VERSION = "4.1.1"  # Apache Kafka jars from Maven Central
JVM_OPTIONS = ["-Xms256m", "-XX:+UseG1GC", "-Djava.awt.headless=true"]
HEAP_SINGLE, HEAP_CLUSTER_NODE = "-Xmx768m", "-Xmx512m"

LOG4J2_PROPERTIES = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
"""


def require_tool(tool: str, purpose: str) -> str:
    """Path of ``tool`` on PATH, or a ServiceError that says how to get it."""
    found = shutil.which(tool)
    if not found:
        hint = {
            "java": "install a JDK 17+ (Debian/Ubuntu: `apt-get install openjdk-17-jdk-headless`; "
            "conda: `conda install -c conda-forge openjdk=17`)",
            "mvn": "install Maven 3.8+ (Debian/Ubuntu: `apt-get install maven`; "
            "conda: `conda install -c conda-forge maven`)",
        }.get(tool, f"install {tool}")
        raise ServiceError(f"`{tool}` not found on PATH; it is needed to {purpose}. Please {hint}.")
    return found


def broker_properties(settings: Settings, log_dir: Path, node_id: int = 1) -> str:
    """server.properties for node ``node_id`` (1-based): a combined broker+controller."""
    port = settings.broker_ports[node_id - 1]
    cport = settings.controller_ports[node_id - 1]
    voters = ",".join(
        f"{n}@{LOCAL_HOST}:{p}" for n, p in enumerate(settings.controller_ports, start=1)
    )
    replicas, min_isr = settings.replication_factor, settings.min_insync_replicas
    lines = {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://{LOCAL_HOST}:{port},CONTROLLER://{LOCAL_HOST}:{cport}",
        "advertised.listeners": f"PLAINTEXT://{LOCAL_HOST}:{port}",
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(log_dir),
        "num.partitions": str(settings.partitions),
        "default.replication.factor": str(replicas),
        "min.insync.replicas": str(min_isr),
        "unclean.leader.election.enable": "false",
        "offsets.topic.replication.factor": str(replicas),
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": str(replicas),
        "transaction.state.log.min.isr": str(min_isr),
        "share.coordinator.state.topic.replication.factor": str(replicas),
        "share.coordinator.state.topic.min.isr": str(min_isr),
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "false",
        "log.retention.hours": "168",
    }
    if recorded_secure(settings.home):
        lines.update(listener_properties(settings.home, port, cport))
    if settings.brokers > 1:
        # A killed node is fenced (its partitions get new leaders, it leaves every ISR)
        # once it misses heartbeats for this long: 6 s instead of 9 s, for the lesson.
        lines["broker.heartbeat.interval.ms"] = "1000"
        lines["broker.session.timeout.ms"] = "6000"
    return "".join(f"{key}={value}\n" for key, value in lines.items())


def cluster_id(settings: Settings) -> str:
    """The cluster id every node is formatted with, created and recorded on first use
    (beside what the record already holds: ``up --secure`` writes it first)."""
    layout = layout_file(settings.home)
    try:
        record = json.loads(layout.read_text())
    except (OSError, ValueError):
        record = {}
    record = record if isinstance(record, dict) else {}
    if isinstance(record.get("cluster_id"), str):
        return record["cluster_id"]
    legacy = settings.home / "kafka" / "cluster-id"  # homes made before the layout file
    identifier = legacy.read_text().strip() if legacy.exists() else _kafka_cluster_id()
    settings.home.mkdir(parents=True, exist_ok=True)
    record.update(brokers=settings.brokers, cluster_id=identifier)
    layout.write_text(json.dumps(record) + "\n")
    return identifier


def check_layout(settings: Settings) -> None:
    """Refuse to start a cluster of another size on storage formatted for N brokers."""
    recorded = recorded_brokers(settings.home)
    if recorded is None and (settings.home / "kafka" / "data" / "meta.properties").exists():
        recorded = 1
    if recorded is not None and recorded != settings.brokers:
        raise ServiceError(
            f"{settings.home} holds a {recorded}-broker local Kafka, and this asks for "
            f"{settings.brokers}. Keep it (unset PIPELINE_BROKERS, or set it to {recorded}), "
            f"or start afresh with `python -m pipeline_lib down --purge` (deletes the local "
            f"topics, bucket and tables) and then `python -m pipeline_lib up --brokers "
            f"{settings.brokers}`, or use another PIPELINE_HOME."
        )


class KafkaBroker(LocalService):
    """One Kafka node: ``kafka`` when it runs alone, ``kafka-N`` in a local cluster."""

    name = "kafka"
    start_timeout = 90.0

    def __init__(self, settings: Settings, notify: Notify | None = None, node_id: int = 1) -> None:
        if not 1 <= node_id <= settings.brokers:
            raise ServiceError(
                f"broker {node_id} does not exist: this setup runs {settings.brokers} "
                f"broker{'s' if settings.brokers > 1 else ''} (numbered 1-{settings.brokers}; "
                "PIPELINE_BROKERS or `up --brokers N` sets how many)"
            )
        self.node_id = node_id
        self.name = "kafka" if settings.brokers == 1 else f"kafka-{node_id}"
        super().__init__(settings.home, notify)
        self.settings = settings
        # A cluster node stops within this bound or is killed: the last node left
        # without a controller quorum cannot finish a controlled shutdown.
        self.stop_timeout = 20.0 if settings.brokers == 1 else 10.0

    @property
    def port(self) -> int:
        return self.settings.broker_ports[self.node_id - 1]

    @property
    def ports(self) -> dict[str, int]:
        return {
            "broker": self.port,
            "controller": self.settings.controller_ports[self.node_id - 1],
        }

    @property
    def endpoint(self) -> str:
        return f"{LOCAL_HOST}:{self.port}"

    @property
    def libs_dir(self) -> Path:
        return self.settings.cache_dir / f"kafka-{KAFKA_VERSION}-libs"

    def command(self) -> list[str]:
        java = require_tool("java", "run the Kafka broker")
        return [
            java,
            *JVM_OPTIONS,
            HEAP_SINGLE if self.settings.brokers == 1 else HEAP_CLUSTER_NODE,
            f"-Dlog4j2.configurationFile={self.folder / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.folder}",
            "-cp",
            f"{self.libs_dir}/*",
            "kafka.Kafka",
            str(self.folder / "server.properties"),
        ]

    def is_ready(self) -> bool:
        if not port_open(self.port):
            return False
        try:
            with open(self.log_path, "rb") as log:
                return b"Kafka Server started" in log.read()
        except OSError:
            return False

    def prepare(self) -> None:
        java = require_tool("java", "run the Kafka broker")
        self.resolve_jars()
        (self.folder / "log4j2.properties").write_text(LOG4J2_PROPERTIES)
        # Private: on a secure home it holds the admin's password.
        write_private(
            self.folder / "server.properties",
            broker_properties(self.settings, self.data_dir, self.node_id),
        )
        identifier = cluster_id(self.settings)
        if (self.data_dir / "meta.properties").exists():
            return  # formatted before: skip a JVM start
        result = subprocess.run(
            [
                java,
                f"-Dlog4j2.configurationFile={self.folder / 'log4j2.properties'}",
                "-cp",
                f"{self.libs_dir}/*",
                "kafka.tools.StorageTool",
                "format",
                # One argument: a base64 id may start with "-" (1 in 64), which the
                # tool would read as an option of its own after a separate "-t".
                f"--cluster-id={identifier}",
                "-c",
                str(self.folder / "server.properties"),
                "--ignore-formatted",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise ServiceError(
                f"Formatting Kafka storage in {self.data_dir} failed:\n"
                f"{(result.stdout + result.stderr)[-2000:]}\n"
                f"If the folder is from another Kafka version, run `python -m pipeline_lib down "
                f"--purge` and try again."
            )

    def resolve_jars(self) -> Path:
        """Copy the broker's runtime jars from Maven Central into ``libs_dir`` once."""
        if (self.libs_dir / ".complete").exists():
            return self.libs_dir
        mvn = require_tool("mvn", "download the Kafka broker jars from Maven Central")
        self.notify(
            f"kafka: resolving Apache Kafka {KAFKA_VERSION} jars from Maven "
            f"Central (first run only, about a minute)"
        )
        staging = self.libs_dir.with_name(f"{self.libs_dir.name}.partial-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.parent.mkdir(parents=True, exist_ok=True)
        pom = resources.files("pipeline_lib.local").joinpath("kafka-pom.xml")
        with resources.as_file(pom) as pom_path:
            result = subprocess.run(
                [
                    mvn,
                    "-B",
                    "-q",
                    "-f",
                    str(pom_path),
                    f"-Dkafka.version={KAFKA_VERSION}",
                    "dependency:copy-dependencies",
                    "-DincludeScope=runtime",
                    f"-DoutputDirectory={staging}",
                ],
                capture_output=True,
                text=True,
                timeout=900,
            )
        if result.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
            raise ServiceError(
                "Maven could not resolve the Kafka jars. Check that Maven Central is "
                f"reachable (or your ~/.m2/settings.xml mirror). Maven said:\n"
                f"{(result.stdout + result.stderr)[-3000:]}"
            )
        (staging / ".complete").write_text("ok\n")
        try:
            staging.rename(self.libs_dir)
        except OSError:  # another process finished first: keep its copy
            shutil.rmtree(staging, ignore_errors=True)
            if not (self.libs_dir / ".complete").exists():
                raise
        return self.libs_dir


def _kafka_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
