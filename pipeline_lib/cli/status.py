"""What ``status`` shows: the endpoints and names in force, each local service, and
what the pipeline holds (Kafka's counts and lag, BigQuery's rows), as a document
(``--json``) and as lines for a terminal."""

from __future__ import annotations

from pipeline_lib import local
from pipeline_lib.clients.kafka import kafka_connection
from pipeline_lib.core.config import Settings
from pipeline_lib.core.errors import PipelineError


def status_document(settings: Settings, pipeline: bool = True) -> dict[str, object]:
    """Everything `status --json` prints: endpoints, names in force, services, data."""
    services = local.status(settings)
    document: dict[str, object] = {
        "target": settings.target,
        "targets": settings.targets,
        "kafka_bootstrap_servers": settings.kafka_bootstrap_servers,
        "kafka_connection": kafka_connection(settings),
        "gcs_endpoint": settings.storage_emulator_host or "https://storage.googleapis.com",
        "bigquery_endpoint": settings.bigquery_emulator_host or "https://bigquery.googleapis.com",
        "settings": settings.public_dict(),
        "services": [
            {
                "name": s.name,
                "running": s.running,
                "pid": s.pid,
                "ports": s.ports,
                "endpoint": s.endpoint,
                "log": s.log,
                "data_dir": s.data_dir,
                "state": s.detail,
            }
            for s in services
        ],
    }
    if pipeline:
        from pipeline_lib.analysis.monitor import bigquery_summary, kafka_summary
        from pipeline_lib.records.streams import STREAMS

        running = {s.name for s in services if s.running}

        def up_(name: str) -> bool:
            return settings.targets[name] != "local" or name in running

        stopped = "not running (start it with `python -m pipeline_lib up`)"
        kafka_up = not settings.is_local or any(n.startswith("kafka") for n in running)
        document["kafka"] = kafka_summary(settings) if kafka_up else {"error": stopped}
        document["cluster"] = _cluster_document(settings) if kafka_up else {"error": stopped}
        document["bigquery"] = bigquery_summary(settings) if up_("bigquery") else {"error": stopped}
        for name in STREAMS:  # each other stream under its own key
            if name != "ticks":
                document[name] = {
                    "kafka": kafka_summary(settings, stream=name)
                    if kafka_up
                    else {"error": stopped},
                    "bigquery": bigquery_summary(settings, stream=name)
                    if up_("bigquery")
                    else {"error": stopped},
                }
    return document


def _cluster_document(settings: Settings) -> dict[str, object]:
    from pipeline_lib.ops.cluster import describe_cluster

    try:
        return describe_cluster(settings).to_dict()
    except PipelineError as error:
        return {"error": str(error)}


def format_cluster(cluster: dict) -> list[str]:
    """Brokers, quorum leader and a partition table, as `status` prints them."""
    if "error" in cluster:
        return [f"cluster: {cluster['error']}"]
    brokers = ", ".join(
        f"{b['broker_id']} {'up' if b['up'] else 'DOWN'}" for b in cluster["brokers"]
    )
    lines = [f"brokers: {brokers}   controller quorum leader: {cluster['quorum_leader']}"]
    rows = [("partition", "leader", "replicas", "in-sync", "", "messages")]
    for p in cluster["partitions"]:
        rows.append(
            (
                f"{p['topic']}-{p['partition']}",
                "none" if p["offline"] else str(p["leader"]),
                ",".join(map(str, p["replicas"])),
                ",".join(map(str, p["isr"])),
                "OFFLINE" if p["offline"] else "UNDER-REPLICATED" if p["under_replicated"] else "",
                "-" if p["messages"] is None else f"{p['messages']:,}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        lines.append("  " + "  ".join(cells).rstrip())
    return lines


def format_status(document: dict) -> str:
    """A readable status table."""
    targets = document.get("targets") or {}
    lines = [
        f"target: {document['target']}"
        + (f"   ({', '.join(f'{k} {v}' for k, v in targets.items())})" if targets else "")
    ]
    if document["services"]:
        rows = [("service", "state", "pid", "endpoint", "log")]
        for s in document["services"]:
            rows.append((s["name"], s["state"], str(s["pid"] or "-"), s["endpoint"], s["log"]))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            lines.append(
                "  ".join(
                    cell.ljust(width) for cell, width in zip(row, widths, strict=True)
                ).rstrip()
            )
    settings = document["settings"]
    lines += [
        f"kafka bootstrap: {document['kafka_bootstrap_servers']}   "
        f"topic: {settings['topic']}   dead letters: {settings['dead_letter_topic']}",
        f"kafka connection: {document['kafka_connection']}",
        f"gcs: {document['gcs_endpoint']}   bucket: {settings['gcs_bucket']}"
        if targets.get("gcs") != "off"
        else "gcs: off (GCS_TARGET=off: no raw objects, BigQuery alone)",
        f"bigquery: {document['bigquery_endpoint']}   table: "
        f"{settings['gcp_project']}.{settings['bq_dataset']}.{settings['bq_table']}",
    ]
    kafka = document.get("kafka")
    if isinstance(kafka, dict) and kafka.get("exists"):
        lines.append(
            f"kafka: {kafka['messages']:,} messages in {kafka['partitions']} partitions; group "
            f"{kafka['group']!r} lag {kafka['lag']:,}; dead letters {kafka['dead_letters']:,}"
        )
    elif isinstance(kafka, dict) and "error" in kafka:
        lines.append(f"kafka: {kafka['error']}")
    cluster = document.get("cluster")
    if isinstance(cluster, dict) and "error" not in (kafka or {}):
        lines += format_cluster(cluster)
    bq = document.get("bigquery")
    if isinstance(bq, dict) and "events" in bq:
        lines.append(
            f"bigquery: {bq['rows_loaded']:,} rows loaded, {bq['events']:,} distinct events"
        )
    news = document.get("news")
    if isinstance(news, dict):
        kafka, bq = news.get("kafka", {}), news.get("bigquery", {})
        parts = []
        if kafka.get("exists"):
            parts.append(
                f"{kafka['messages']:,} messages in {kafka['topic']!r}, group lag "
                f"{kafka['lag']:,}, dead letters {kafka['dead_letters']:,}"
            )
        if "events" in bq:
            parts.append(f"{bq['events']:,} distinct stories in {bq['table']}")
        if parts:
            lines.append("news: " + "; ".join(parts))
    return "\n".join(lines)
