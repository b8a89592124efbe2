"""Local stand-ins for the cloud: a real Kafka broker and the GCS and BigQuery emulators.

Only used when ``PIPELINE_TARGET=local`` (the default). Each service is a separate
process on 127.0.0.1, reached over the network by the same clients that talk to the
real thing.
"""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor

from pipeline_lib.config import Settings
from pipeline_lib.local.bigquery import BigQueryEmulator
from pipeline_lib.local.gcs import GcsEmulator
from pipeline_lib.local.kafka import KafkaBroker
from pipeline_lib.local.process import (
    LocalService,
    Notify,
    PortInUseError,
    ServiceError,
    ServiceStatus,
)

__all__ = [
    "BigQueryEmulator",
    "GcsEmulator",
    "KafkaBroker",
    "LocalService",
    "PortInUseError",
    "ServiceError",
    "ServiceStatus",
    "down",
    "local_services",
    "status",
    "up",
]


def local_services(settings: Settings, notify: Notify | None = None) -> list[LocalService]:
    """The services this configuration runs locally (none when targeting the cloud)."""
    if not settings.is_local:
        return []
    return [
        KafkaBroker(settings, notify),
        GcsEmulator(settings, notify),
        BigQueryEmulator(settings, notify),
    ]


def up(settings: Settings, notify: Notify | None = None) -> list[ServiceStatus]:
    """Start (or reuse) every local service and wait until each is ready."""
    if not settings.is_local:
        raise ServiceError(
            "PIPELINE_TARGET=cloud: nothing to start locally. Unset PIPELINE_TARGET and the "
            "KAFKA_BOOTSTRAP_SERVERS address to use the local services."
        )
    services = local_services(settings, notify)
    already = {s.name for s in services if s.status().running}
    # Start all three at once: each mostly waits on its own JVM/process start-up.
    with ThreadPoolExecutor(max_workers=len(services)) as pool:
        futures = [pool.submit(service.up) for service in services]
    errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:
        # All or nothing: stop what this call started, so a refused `up` (a port taken
        # by another program) leaves the machine as it found it.
        for service in services:
            if service.name not in already:
                service.down()
        raise errors[0]
    return [f.result() for f in futures]


def down(settings: Settings, notify: Notify | None = None, purge: bool = False) -> list[str]:
    """Stop every local service; with ``purge`` also delete their data (not the jar cache)."""
    stopped = []
    for service in local_services(settings, notify):
        if service.down():
            stopped.append(service.name)
        if purge:
            shutil.rmtree(service.data_dir, ignore_errors=True)
            if isinstance(service, KafkaBroker):
                (service.folder / "cluster-id").unlink(missing_ok=True)
    return stopped


def status(settings: Settings) -> list[ServiceStatus]:
    """What runs, where, and where its log is."""
    return [service.status() for service in local_services(settings)]
