"""Command line: ``python -m pipeline_lib up | down | status`` (also ``stock-pipeline``).

Each sub-command is a small function over :class:`Settings`; errors the user can fix
print one clear message and exit with code 2 instead of a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from pipeline_lib import local
from pipeline_lib.clients import ConnectionFailed
from pipeline_lib.config import ConfigError, Settings


def _notify(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def status_document(settings: Settings) -> dict[str, object]:
    """Everything `status --json` prints: endpoints, names in force, services."""
    services = local.status(settings)
    return {
        "target": settings.target,
        "kafka_bootstrap_servers": settings.kafka_bootstrap_servers,
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


def format_status(document: dict) -> str:
    """A readable status table."""
    lines = [f"target: {document['target']}"]
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
        f"gcs: {document['gcs_endpoint']}   bucket: {settings['gcs_bucket']}",
        f"bigquery: {document['bigquery_endpoint']}   table: "
        f"{settings['gcp_project']}.{settings['bq_dataset']}.{settings['bq_table']}",
    ]
    return "\n".join(lines)


def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    local.up(settings, notify=_notify)
    print(format_status(status_document(settings)))
    return 0


def cmd_down(settings: Settings, args: argparse.Namespace) -> int:
    stopped = local.down(settings, notify=_notify, purge=args.purge)
    print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")
    if args.purge:
        print(f"deleted local data under {settings.home}")
    return 0


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    document = status_document(settings)
    print(json.dumps(document, indent=2) if args.json else format_status(document))
    return 0


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    """The headless flow. For now: bring the local services up and show where they are."""
    if settings.is_local:
        local.up(settings, notify=_notify)
    print(format_status(status_document(settings)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline_lib",
        description="Stock ticks: source -> Kafka -> GCS + BigQuery, with local services.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser("up", help="start (or reuse) the local Kafka broker and emulators")
    up.set_defaults(func=cmd_up)

    down = commands.add_parser("down", help="stop the local services")
    down.add_argument("--purge", action="store_true", help="also delete their data")
    down.set_defaults(func=cmd_down)

    status = commands.add_parser("status", help="what runs, on which ports, where the logs are")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)
    demo = commands.add_parser("demo", help="run the whole flow headless on the configuration")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m pipeline_lib`` and the ``stock-pipeline`` command."""
    args = build_parser().parse_args(argv)
    handler: Callable[[Settings, argparse.Namespace], int] = args.func
    try:
        return handler(Settings.from_env(), args)
    except (ConfigError, local.ServiceError, ConnectionFailed) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
