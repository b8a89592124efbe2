"""Local stand-ins for the cloud: a real Kafka broker and the GCS and BigQuery emulators.

Only used when ``PIPELINE_TARGET=local`` (the default). Each service is a separate
process on 127.0.0.1, reached over the network by the same clients that talk to the
real thing.
"""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor

from pipeline_lib.core.config import Settings
from pipeline_lib.home.files import layout_file
from pipeline_lib.local.bigquery import BigQueryEmulator
from pipeline_lib.local.gcs import GcsEmulator
from pipeline_lib.local.kafka import KafkaBroker, check_layout, cluster_id
from pipeline_lib.local.process import (
    LocalService,
    Notify,
    PortInUseError,
    ServiceError,
    ServiceStatus,
)
from pipeline_lib.local.secure import grant_acls, prepare_home, recorded_secure, secure_dir

__all__ = [
    "BigQueryEmulator",
    "GcsEmulator",
    "KafkaBroker",
    "LocalService",
    "PortInUseError",
    "ServiceError",
    "ServiceStatus",
    "down",
    "kafka_nodes",
    "local_services",
    "start_broker",
    "status",
    "stop_broker",
    "up",
]


def local_services(settings: Settings, notify: Notify | None = None) -> list[LocalService]:
    """The services this configuration runs locally: each service whose target is
    ``local`` (KAFKA_TARGET, GCS_TARGET, BIGQUERY_TARGET; none when all are cloud)."""
    services: list[LocalService] = []
    if settings.kafka_target == "local":
        services += kafka_nodes(settings, notify)
    if settings.gcs_target == "local":
        services.append(GcsEmulator(settings, notify))
    if settings.bigquery_target == "local":
        services.append(BigQueryEmulator(settings, notify))
    return services


def kafka_nodes(settings: Settings, notify: Notify | None = None) -> list[KafkaBroker]:
    """The local Kafka brokers 1..N."""
    return [KafkaBroker(settings, notify, n) for n in range(1, settings.brokers + 1)]


def _local_broker(settings: Settings, node_id: int, notify: Notify | None) -> KafkaBroker:
    if not settings.is_local:
        raise ServiceError(
            "PIPELINE_TARGET=cloud: `broker` stops and starts local brokers only; use your "
            "cluster's own tools."
        )
    check_layout(settings)
    return KafkaBroker(settings, notify, node_id)


def stop_broker(
    settings: Settings, node_id: int, kill: bool = False, notify: Notify | None = None
) -> None:
    """Stop one local broker cleanly (leadership moves first), or SIGKILL it (a crash)."""
    broker = _local_broker(settings, node_id, notify)
    if not broker.running_pid():
        raise ServiceError(f"broker {node_id} is not running: nothing to stop")
    broker.down(kill=kill)


def start_broker(settings: Settings, node_id: int, notify: Notify | None = None) -> ServiceStatus:
    """Start one stopped local broker again; it catches up and rejoins the ISR."""
    broker = _local_broker(settings, node_id, notify)
    pid = broker.running_pid()
    if pid:
        raise ServiceError(f"broker {node_id} is already running (pid {pid}): nothing to start")
    return broker.up()


def up(
    settings: Settings,
    notify: Notify | None = None,
    kafka_only: bool = False,
    secure: bool = False,
) -> list[ServiceStatus]:
    """Start (or reuse) every local service (``kafka_only``: just the brokers) and wait
    until each is ready. ``secure`` makes a new home's Kafka secure (SASL_SSL, ACLs; see
    :mod:`pipeline_lib.local.secure`); a home made so stays so."""
    services = kafka_nodes(settings, notify) if kafka_only else local_services(settings, notify)
    if not services or (kafka_only and not settings.is_local):
        what = "Kafka targets" if kafka_only else "Kafka, GCS and BigQuery all target"
        raise ServiceError(
            f"nothing to start locally: {what} the cloud (GCS may be off). Unset "
            "PIPELINE_TARGET (and KAFKA_TARGET, GCS_TARGET, BIGQUERY_TARGET) and "
            "KAFKA_BOOTSTRAP_SERVERS to use the local services."
        )
    if settings.is_local:
        check_layout(settings)
        if secure:
            prepare_home(settings.home)
        cluster_id(settings)  # recorded once, before the nodes format their storage in parallel
    already = {s.name for s in services if s.status().running}
    # Start them all at once: each mostly waits on its own JVM/process start-up.
    with ThreadPoolExecutor(max_workers=len(services)) as pool:
        futures = [pool.submit(service.up) for service in services]
    errors = [f.exception() for f in futures if f.exception() is not None]
    if not errors and settings.is_local and recorded_secure(settings.home):
        try:
            grant_acls(settings)
        except ServiceError as error:
            errors.append(error)
    if errors:
        # All or nothing: stop what this call started, so a refused `up` (a port taken
        # by another program) leaves the machine as it found it.
        for service in services:
            if service.name not in already:
                service.down()
        raise errors[0]
    return [f.result() for f in futures]


def down(
    settings: Settings, notify: Notify | None = None, purge: bool = False, kafka_only: bool = False
) -> list[str]:
    """Stop every local service (``kafka_only``: just the brokers); with ``purge`` also
    delete their data (not the jar cache)."""
    services = kafka_nodes(settings, notify) if kafka_only else local_services(settings, notify)
    # Every node at once: a cluster keeps its controller quorum while they all shut
    # down cleanly (one after another, the last ones would wait for a quorum).
    with ThreadPoolExecutor(max_workers=max(1, len(services))) as pool:
        results = list(pool.map(lambda service: service.down(), services))
    stopped = [s.name for s, was_running in zip(services, results, strict=True) if was_running]
    if purge:
        for service in services:
            shutil.rmtree(service.data_dir, ignore_errors=True)
        (settings.home / "kafka" / "cluster-id").unlink(missing_ok=True)
        layout_file(settings.home).unlink(missing_ok=True)
        shutil.rmtree(secure_dir(settings.home), ignore_errors=True)  # passwords, keys
    return stopped


def status(settings: Settings) -> list[ServiceStatus]:
    """What runs, where, and where its log is."""
    return [service.status() for service in local_services(settings)]
