"""Everything the setup notebook does: check tools, start local services, create resources.

Idempotent: running it again changes nothing that exists. Works the same on the
local services and on real Kafka + GCP (where it starts nothing and only creates the
topic, bucket, dataset, table and view if missing).
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pandas as pd

from pipeline_lib import local
from pipeline_lib.clients.kafka import ensure_topic
from pipeline_lib.core.config import Settings
from pipeline_lib.local.process import Notify
from pipeline_lib.records.routes import Route, routes


def tool_versions() -> pd.DataFrame:
    """Java and Maven on PATH (needed for the local Kafka broker), with versions."""
    rows = []
    for tool, args in (("java", ["-version"]), ("mvn", ["-v"])):
        path = shutil.which(tool)
        version = ""
        if path:
            result = subprocess.run([path, *args], capture_output=True, text=True, timeout=60)
            lines = (result.stdout + result.stderr).strip().splitlines()
            first = next((line for line in lines if line.strip()), "")
            version = re.sub(r"\x1b\[[0-9;]*m", "", first)
        rows.append({"tool": tool, "found": bool(path), "path": path or "-", "version": version})
    return pd.DataFrame(rows)


def provision(
    settings: Settings, start_local: bool = True, notify: Notify | None = None
) -> pd.DataFrame:
    """Start local services (if local), then create, for each stream (ticks, news),
    topic, dead-letter topic, bucket, table and view.

    Returns a status table: one row per resource with where it is and its state.
    """
    rows = []
    if start_local and local.local_services(settings):
        for status in local.up(settings, notify=notify):
            rows.append(
                {
                    "resource": f"{status.name} service",
                    "where": status.endpoint,
                    "state": status.detail,
                    "detail": f"pid {status.pid}, log {status.log}",
                }
            )
    for to in routes(settings):
        rows += _stream_resources(settings, to)
    return pd.DataFrame(rows)


def _stream_resources(settings: Settings, to: Route) -> list[dict[str, str]]:
    """Topic, dead-letter topic, bucket, table and view of one stream."""
    from pipeline_lib.sinks.bigquery import BigQuerySink
    from pipeline_lib.sinks.gcs import GcsSink

    stream = to.name
    created = ensure_topic(settings, to.topic)
    rows = [
        {
            "resource": f"Kafka topic ({stream})",
            "where": f"{settings.kafka_bootstrap_servers}/{to.topic}",
            "state": "created" if created else "exists",
            "detail": f"{settings.partitions} partitions when created, keyed by symbol",
        }
    ]
    created = ensure_topic(settings, to.dead_letter_topic, partitions=1)
    rows.append(
        {
            "resource": f"dead-letter topic ({stream})",
            "where": f"{settings.kafka_bootstrap_servers}/{to.dead_letter_topic}",
            "state": "created" if created else "exists",
            "detail": "rejected records with the reason in headers",
        }
    )
    if settings.keeps_raw_objects:
        GcsSink(settings).setup()
        rows.append(
            {
                "resource": f"GCS objects ({stream})",
                "where": f"gs://{settings.gcs_bucket}/{to.gcs_folder}",
                "state": "ready",
                "detail": settings.storage_emulator_host or "Google Cloud Storage",
            }
        )
    else:
        rows.append(
            {
                "resource": f"GCS objects ({stream})",
                "where": "-",
                "state": "off",
                "detail": "GCS_TARGET=off: no raw objects, BigQuery alone",
            }
        )
    BigQuerySink(settings, stream=to).setup()
    rows.append(
        {
            "resource": f"BigQuery table ({stream})",
            "where": to.table_id,
            "state": "ready",
            "detail": "day-partitioned on ts, clustered by symbol",
        }
    )
    rows.append(
        {
            "resource": f"BigQuery view ({stream})",
            "where": to.view_id,
            "state": "ready",
            "detail": "each record once: for your own SQL",
        }
    )
    rows.append(
        {
            "resource": f"BigQuery run summary ({stream})",
            "where": to.runs_id,
            "state": "ready",
            "detail": "runs and symbols landed: what the live chart asks first",
        }
    )
    return rows
