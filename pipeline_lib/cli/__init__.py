"""Command line: ``python -m pipeline_lib up | down | status`` (also ``stock-pipeline``).

Each sub-command is a small function over :class:`Settings`; errors the user can fix
print one clear message and exit with code 2 instead of a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline_lib import local
from pipeline_lib.cli.classroom import add_class_parser
from pipeline_lib.cli.lab import add_lab_parser
from pipeline_lib.cli.status import format_status, status_document
from pipeline_lib.core.checks import check_brokers
from pipeline_lib.core.config import BQ_WRITES, Settings
from pipeline_lib.core.errors import ConfigError, PipelineError
from pipeline_lib.home import load_settings


def _number(kind: type, low: float, inclusive: bool) -> Callable[[str], float]:
    """An argparse type: a finite number >= low (or > low)."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        ok = math.isfinite(value) and (value >= low if inclusive else value > low)
        if not ok:
            relation = ">=" if inclusive else ">"
            raise argparse.ArgumentTypeError(
                f"{text!r}: must be a finite number {relation} {low:g}"
            )
        return value

    return parse


def _start_time(text: str) -> datetime:
    """An argparse type: ISO 8601 date-time; without a zone it is UTC."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time (e.g. 2024-01-02T14:30:00Z)"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


positive = _number(float, 0, inclusive=False)
non_negative = _number(float, 0, inclusive=True)
count = _number(int, 0, inclusive=True)
positive_count = _number(int, 1, inclusive=True)


def _notify(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    if args.brokers is not None:
        settings = settings.with_overrides(brokers=check_brokers(args.brokers, "--brokers"))
    local.up(settings, notify=_notify, secure=args.secure)
    if args.secure:  # the home's secure defaults, now that it has them
        settings = load_settings(brokers=settings.brokers)  # the home is secure now
    print(format_status(status_document(settings, pipeline=False)))
    return 0


def cmd_broker(settings: Settings, args: argparse.Namespace) -> int:
    """`broker stop N [--kill]` / `broker start N`: fail one local broker, or bring it back."""
    if args.action == "stop":
        local.stop_broker(settings, args.node, kill=args.kill, notify=_notify)
        how = "killed (SIGKILL)" if args.kill else "stopped"
        print(f"broker {args.node} {how}; `python -m pipeline_lib status` shows the new leaders")
    else:
        if args.kill:
            raise ConfigError("--kill applies to `broker stop` only")
        local.start_broker(settings, args.node, notify=_notify)
        print(f"broker {args.node} started; it catches up and rejoins the in-sync replicas")
    return 0


def cmd_sentiment(settings: Settings, args: argparse.Namespace) -> int:
    """One JSON line per text: its compound score and label (VADER + finance lexicon)."""
    from pipeline_lib.records.sentiment import score

    texts = args.text or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    for text in texts:
        result = score(text)
        print(json.dumps({"text": text, "compound": result.compound, "label": result.label}))
    return 0


def cmd_contract(settings: Settings, args: argparse.Namespace) -> int:
    """Each stream's record contract as JSON Schema (for producers in other languages)."""
    from pipeline_lib.records.contract import json_schema
    from pipeline_lib.records.streams import get_stream, stream_names

    schemas = [json_schema(get_stream(name)) for name in stream_names(args.stream)]
    print(json.dumps(schemas[0] if len(schemas) == 1 else schemas, indent=2))
    return 0


def cmd_setup(settings: Settings, args: argparse.Namespace) -> int:
    """What the setup notebook does: services (if local), topic, bucket, table, view."""
    from pipeline_lib.ops.provision import provision

    print(provision(settings, start_local=True, notify=_notify).to_string(index=False))
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


def add_source_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by `sample` and `produce`."""
    from pipeline_lib.sources import SOURCE_NAMES

    parser.add_argument("--source", choices=SOURCE_NAMES, default="simulator")
    parser.add_argument("--max-records", type=count, default=None, help="stop after N records")
    parser.add_argument("--duration", type=positive, default=None, help="stop after N seconds")
    parser.add_argument(
        "--seed", type=int, default=None, help="simulator seed (same seed, same stream)"
    )
    parser.add_argument("--symbols", default=None, help="comma-separated, e.g. AAPL,MSFT")
    parser.add_argument(
        "--clock", choices=["always_open", "market"], default="always_open", help="simulator clock"
    )
    parser.add_argument("--interval", type=positive, default=1.0, help="simulated seconds per bar")
    parser.add_argument(
        "--start",
        type=_start_time,
        default=None,
        help="simulator: first event time, ISO 8601 (default: now); same seed + start, same stream",
    )
    parser.add_argument("--csv", default=None, help="CSV file to replay (default: data/ sample)")
    parser.add_argument("--split-adjust", action="store_true", help="CSV: apply Adj Close ratio")
    parser.add_argument(
        "--speed", type=positive, default=None, help="event seconds per wall second (default: max)"
    )
    parser.add_argument("--av-function", choices=["intraday", "quote"], default="intraday")
    parser.add_argument("--av-interval", default="5min", help="AlphaVantage bar interval")
    parser.add_argument(
        "--stream",
        choices=["ticks", "news", "both"],
        default="ticks",
        help="ticks (prices), news (headlines with sentiment) or both, in event order",
    )


def source_from_args(settings: Settings, args: argparse.Namespace) -> Iterable[Any]:
    from pipeline_lib.sources import source_from_parameters

    return source_from_parameters(
        settings,
        source=args.source,
        symbols=args.symbols,
        seed=args.seed,
        clock=args.clock,
        interval_s=args.interval,
        start=args.start,
        csv_path=args.csv,
        split_adjust=args.split_adjust,
        av_function=args.av_function,
        av_interval=args.av_interval,
        stream=args.stream,
    )


def cmd_sample(settings: Settings, args: argparse.Namespace) -> int:
    """Print records as JSON lines, for a quick look and for scripts."""
    from pipeline_lib.records.streams import stream_of
    from pipeline_lib.sources import stream

    records = stream(
        source_from_args(settings, args),
        max_records=args.max_records,
        duration=args.duration,
        speed=args.speed,
        progress=args.progress,
    )
    out = sys.stdout.buffer
    try:
        for record in records:
            out.write(stream_of(record).encode(record) + b"\n")
    except BrokenPipeError:  # `| head` closed the pipe: that is fine
        sys.stderr.close()
    out.flush()
    return 0


def cmd_produce(settings: Settings, args: argparse.Namespace) -> int:
    """Source → Kafka."""
    from pipeline_lib.kafka_io.producer import produce

    source = source_from_args(settings, args)
    report = produce(
        settings,
        source,
        max_records=args.max_records,
        duration=args.duration,
        rate=args.rate,
        speed=args.speed,
        progress=not args.quiet,
        skip=args.skip,
    )
    print(report.summary())
    resume = report.first_unacknowledged
    if resume is not None:
        options = [f"--source {args.source}", f"--stream {args.stream}", f"--skip {resume}"]
        if hasattr(source, "seed") and hasattr(source, "start"):  # the simulator
            options += [f"--seed {source.seed}", f"--start {source.start.isoformat()}"]
        if args.max_records is not None:
            options.append(f"--max-records {args.max_records - report.counted_before_resume}")
        print(f"resume with: python -m pipeline_lib produce {' '.join(options)}")
    return 0 if report.ok else 1


def cmd_consume(settings: Settings, args: argparse.Namespace) -> int:
    """Kafka → GCS + BigQuery, every stream (or the one --stream names)."""
    from pipeline_lib.kafka_io.consume import consume_streams
    from pipeline_lib.records.streams import stream_names

    reports = consume_streams(
        settings,
        stream_names(args.stream),
        max_records=args.max_records,
        until_idle=args.until_idle,
        duration=args.duration,
        batch_size=args.batch_size,
        flush_interval=args.flush_interval,
        progress=not args.quiet,
        file_format=args.format,
        bq_write=args.bq_write,
    )
    if args.json:
        document = {name: report.to_dict() for name, report in reports.items()}
        print(json.dumps(document if len(reports) > 1 else next(iter(document.values()))))
    else:
        print("\n".join(report.summary() for report in reports.values()))
    status = 0
    for report in reports.values():
        if report.stopped_because.startswith("no partitions assigned") and report.lag:
            print(
                f"error: no partition of {report.topic!r} was assigned to this consumer, and "
                f"the group still has {report.lag:,} records to land: other members hold the "
                "partitions, or the group is rebalancing. Check `python -m pipeline_lib status`.",
                file=sys.stderr,
            )
            status = 1
    return status


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    """The whole flow headless: four notebooks by papermill, then HTML exports."""
    from pipeline_lib.cli.flow import run_flow

    result = run_flow(
        settings,
        records=args.records,
        seed=args.seed,
        output_dir=Path(args.output) if args.output else None,
        notify=_notify,
        lessons=args.lessons,
    )
    print(result.summary())
    print(format_status(status_document(settings)))
    print(f"\nopen {result.html['04_analysis']} for the Close/Volume figure and the news section")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline_lib",
        description="Stock ticks: source -> Kafka -> GCS + BigQuery, with local services.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser("up", help="start (or reuse) the local Kafka broker and emulators")
    up.add_argument(
        "--brokers",
        type=int,
        default=None,
        help="local Kafka brokers: 1, or 3-5 for a replicated cluster (default: PIPELINE_BROKERS)",
    )
    up.add_argument(
        "--secure",
        action="store_true",
        help="a new home's Kafka with TLS, SCRAM logins and ACLs (users admin, pipeline, "
        "analyst); later commands connect as pipeline by themselves",
    )
    up.set_defaults(func=cmd_up)

    broker = commands.add_parser(
        "broker", help="stop (or kill) one local Kafka broker, or start it again"
    )
    broker.add_argument("action", choices=["stop", "start"])
    broker.add_argument("node", type=int, metavar="N", help="broker number, 1-based")
    broker.add_argument("--kill", action="store_true", help="SIGKILL: a crash, not a clean stop")
    broker.set_defaults(func=cmd_broker)

    setup = commands.add_parser(
        "setup", help="start services (if local) and create topic, bucket, table and view"
    )
    setup.set_defaults(func=cmd_setup)

    down = commands.add_parser("down", help="stop the local services")
    down.add_argument("--purge", action="store_true", help="also delete their data")
    down.set_defaults(func=cmd_down)

    status = commands.add_parser("status", help="what runs, on which ports, where the logs are")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)
    sentiment = commands.add_parser(
        "sentiment", help="score headlines: one JSON line each (texts as arguments or stdin)"
    )
    sentiment.add_argument("text", nargs="*", help="headlines (none: one per line on stdin)")
    sentiment.set_defaults(func=cmd_sentiment)

    contract = commands.add_parser(
        "contract", help="print a stream's record contract (version, fields) as JSON Schema"
    )
    contract.add_argument("--stream", default="ticks", help="ticks, news, or all")
    contract.set_defaults(func=cmd_contract)

    sample = commands.add_parser("sample", help="print records from a source as JSON lines")
    add_source_options(sample)
    sample.add_argument("--progress", action="store_true", help="progress bar on stderr")
    sample.set_defaults(func=cmd_sample)

    produce = commands.add_parser("produce", help="stream a source into Kafka")
    add_source_options(produce)
    produce.add_argument("--rate", type=positive, default=None, help="messages per second limit")
    produce.add_argument(
        "--skip", type=count, default=0, help="skip the first N records of the source (resume)"
    )
    produce.add_argument("--quiet", action="store_true", help="no progress bar")
    produce.set_defaults(func=cmd_produce)

    consume = commands.add_parser("consume", help="land the topic in GCS and BigQuery")
    consume.add_argument(
        "--max-records", type=positive_count, default=None, help="stop after N records"
    )
    consume.add_argument(
        "--until-idle", type=non_negative, default=None, help="stop once caught up and idle N s"
    )
    consume.add_argument("--duration", type=positive, default=None, help="stop after N seconds")
    consume.add_argument(
        "--batch-size", type=positive_count, default=10_000, help="records per batch"
    )
    consume.add_argument(
        "--flush-interval", type=positive, default=1.0, help="close a batch after N seconds"
    )
    consume.add_argument("--format", choices=["ndjson", "parquet"], default="ndjson")
    consume.add_argument(
        "--bq-write",
        choices=list(BQ_WRITES),
        default=None,
        help="how to write BigQuery (default: BQ_WRITE, else storage): "
        + "; ".join(f"{name}: {meaning}" for name, meaning in BQ_WRITES.items()),
    )
    consume.add_argument("--quiet", action="store_true", help="no progress bar")
    consume.add_argument("--json", action="store_true", help="print the report as JSON")
    consume.add_argument(
        "--stream",
        choices=["ticks", "news", "both"],
        default="both",
        help="which streams to land (default: both, each its own consumer)",
    )
    consume.set_defaults(func=cmd_consume)

    demo = commands.add_parser("demo", help="run the whole flow headless on the configuration")
    demo.add_argument(
        "--records", type=positive_count, default=20_000, help="simulated ticks to stream"
    )
    demo.add_argument("--seed", type=int, default=42, help="simulator seed")
    demo.add_argument(
        "--output", default=None, help="folder for executed notebooks (default: output/<time>)"
    )
    demo.add_argument(
        "--lessons",
        action="store_true",
        help="also run notebook 03's crash drills and notebook 07's schema lesson (~1 min)",
    )
    demo.set_defaults(func=cmd_demo)
    add_lab_parser(commands)
    add_class_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m pipeline_lib`` and the ``stock-pipeline`` command."""
    args = build_parser().parse_args(argv)
    handler: Callable[[Settings, argparse.Namespace], int] = args.func
    try:
        return handler(load_settings(), args)
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
