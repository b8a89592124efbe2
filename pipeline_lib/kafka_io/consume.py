"""Running sink consumers until a bound: one stream, or every stream side by side on
threads, each a group member of its own; what notebooks and ``consume`` call."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from pipeline_lib.core.config import Settings
from pipeline_lib.kafka_io.consumer import SinkConsumer, stop_on_sigterm
from pipeline_lib.kafka_io.reports import BatchReport, ConsumeReport
from pipeline_lib.sinks.landing import landing_sinks


def _landing_consumer(
    settings: Settings,
    stream: str,
    file_format: str,
    bq_write: str | None,
    batch_size: int,
    flush_interval: float,
    on_batch: Callable[[BatchReport], None] | None,
) -> SinkConsumer:
    """A SinkConsumer of ``stream`` into GCS and BigQuery."""
    return SinkConsumer(
        settings,
        stream=stream,
        sinks=landing_sinks(settings, stream, file_format, bq_write),
        batch_size=batch_size,
        flush_interval=flush_interval,
        on_batch=on_batch,
    )


def consume(
    settings: Settings,
    max_records: int | None = None,
    until_idle: float | None = None,
    duration: float | None = None,
    batch_size: int = 10_000,
    flush_interval: float = 1.0,
    progress: bool = False,
    file_format: str = "ndjson",
    on_batch: Callable[[BatchReport], None] | None = None,
    stream: str = "ticks",
    bq_write: str | None = None,
) -> ConsumeReport:
    """Run one consumer of ``stream`` ("ticks" or "news") into GCS and BigQuery until a
    bound is reached (with Ctrl-C / SIGTERM handling): :func:`consume_streams` of one."""
    return consume_streams(
        settings,
        (stream,),
        max_records=max_records,
        until_idle=until_idle,
        duration=duration,
        batch_size=batch_size,
        flush_interval=flush_interval,
        progress=progress,
        file_format=file_format,
        on_batch=on_batch,
        bq_write=bq_write,
    )[stream]


def consume_streams(
    settings: Settings,
    streams: Sequence[str] = ("ticks", "news"),
    max_records: int | None = None,
    until_idle: float | None = None,
    duration: float | None = None,
    batch_size: int = 10_000,
    flush_interval: float = 1.0,
    progress: bool = False,
    file_format: str = "ndjson",
    on_batch: Callable[[BatchReport], None] | None = None,
    bq_write: str | None = None,
) -> dict[str, ConsumeReport]:
    """One consumer per stream, side by side on threads (each its own group member,
    topic and table); the reports by stream.

    ``max_records`` bounds the first stream (ticks); once it is reached, the others
    (news, which rides along with the ticks) stop as soon as they are caught up.
    ``until_idle`` and ``duration`` bound each. Ctrl-C or SIGTERM stops them all,
    each flushing and committing its open batch. An error in one stops the others
    and is raised once they have closed.
    """
    consumers = {
        name: _landing_consumer(
            settings, name, file_format, bq_write, batch_size, flush_interval, on_batch
        )
        for name in streams
    }
    if len(consumers) == 1:  # on this thread, with its own signal handling
        ((name, only),) = consumers.items()
        return {
            name: only.run(
                max_records=max_records, until_idle=until_idle, duration=duration, progress=progress
            )
        }
    reports: dict[str, ConsumeReport] = {}
    errors: list[BaseException] = []

    first = streams[0]

    def run(name: str) -> None:
        try:
            reports[name] = report = consumers[name].run(
                max_records=max_records if name == first else None,
                until_idle=until_idle,
                duration=duration,
                progress=progress,
                handle_signals=False,
            )
            if name == first and report.stopped_because.endswith("records reached"):
                for other in streams[1:]:
                    consumers[other].stop_when_caught_up()
        except BaseException as error:
            errors.append(error)
            for other in consumers.values():
                other.stop()

    threads = [
        threading.Thread(target=run, args=(name,), name=f"consume-{name}") for name in streams
    ]
    restore = stop_on_sigterm(consumers.values())
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)
    except KeyboardInterrupt:
        for consumer in consumers.values():
            consumer.stop()
        for thread in threads:
            thread.join()
    finally:
        if restore is not None:
            restore()
    if errors:
        raise errors[0]
    return {name: reports[name] for name in streams}
