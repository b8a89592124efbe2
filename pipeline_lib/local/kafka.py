"""A real single-node Apache Kafka broker (KRaft mode) on 127.0.0.1.

The broker's jars come from Maven Central: Maven resolves ``kafka-pom.xml`` once
into ``<home>/kafka/libs-<version>/``, later starts reuse that folder. No tarball,
no Docker, no ZooKeeper: ``java -cp 'libs/*' kafka.Kafka server.properties``.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import uuid
from importlib import resources
from pathlib import Path

from pipeline_lib.config import LOCAL_HOST, Settings
from pipeline_lib.local.process import LocalService, Notify, ServiceError, port_open

JVM_OPTIONS = ["-Xms256m", "-Xmx768m", "-XX:+UseG1GC", "-Djava.awt.headless=true"]

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


def broker_properties(settings: Settings, log_dir: Path) -> str:
    """server.properties for one combined broker+controller node."""
    port, cport = settings.kafka_port, settings.kafka_controller_port
    lines = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{LOCAL_HOST}:{cport}",
        "listeners": f"PLAINTEXT://{LOCAL_HOST}:{port},CONTROLLER://{LOCAL_HOST}:{cport}",
        "advertised.listeners": f"PLAINTEXT://{LOCAL_HOST}:{port}",
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(log_dir),
        "num.partitions": str(settings.partitions),
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "false",
        "log.retention.hours": "168",
    }
    return "".join(f"{key}={value}\n" for key, value in lines.items())


class KafkaBroker(LocalService):
    name = "kafka"
    start_timeout = 90.0

    def __init__(self, settings: Settings, notify: Notify | None = None) -> None:
        super().__init__(settings.home, notify)
        self.settings = settings

    @property
    def ports(self) -> dict[str, int]:
        return {
            "broker": self.settings.kafka_port,
            "controller": self.settings.kafka_controller_port,
        }

    @property
    def endpoint(self) -> str:
        return f"{LOCAL_HOST}:{self.settings.kafka_port}"

    @property
    def libs_dir(self) -> Path:
        return self.settings.cache_dir / f"kafka-{self.settings.kafka_version}-libs"

    def command(self) -> list[str]:
        java = require_tool("java", "run the Kafka broker")
        return [
            java,
            *JVM_OPTIONS,
            f"-Dlog4j2.configurationFile={self.folder / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.folder}",
            "-cp",
            f"{self.libs_dir}/*",
            "kafka.Kafka",
            str(self.folder / "server.properties"),
        ]

    def is_ready(self) -> bool:
        if not port_open(self.settings.kafka_port):
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
        (self.folder / "server.properties").write_text(
            broker_properties(self.settings, self.data_dir)
        )
        cluster_id_file = self.folder / "cluster-id"
        if not cluster_id_file.exists():
            cluster_id_file.write_text(_kafka_cluster_id())
        result = subprocess.run(
            [
                java,
                f"-Dlog4j2.configurationFile={self.folder / 'log4j2.properties'}",
                "-cp",
                f"{self.libs_dir}/*",
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id_file.read_text().strip(),
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
            f"kafka: resolving Apache Kafka {self.settings.kafka_version} jars from Maven "
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
                    f"-Dkafka.version={self.settings.kafka_version}",
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
