"""Source → Kafka. Keyed by symbol, so each symbol's ticks stay in order on one partition.

Each record goes to its stream's topic (ticks to ``PIPELINE_TOPIC``, news to
``PIPELINE_NEWS_TOPIC``), so one producer run can carry both streams in event order.

Durable by default (``acks=all`` with idempotence: a retried send is never written
twice), batched and lz4-compressed for throughput, with a delivery callback that
counts failures, and a flush before returning — also on Ctrl-C — so nothing sent is
left in the client's buffer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pipeline_lib.clients.kafka import (
    PRODUCER_DEFAULTS,
    access_denied,
    ensure_topic,
    kafka_producer,
)
from pipeline_lib.core.config import Settings
from pipeline_lib.core.errors import PipelineError
from pipeline_lib.records import contract
from pipeline_lib.records.routes import route
from pipeline_lib.records.streams import stream_of
from pipeline_lib.sources.base import bounded, paced

__all__ = ["PRODUCER_DEFAULTS", "ProduceReport", "ProducerError", "kafka_producer", "produce"]
log = logging.getLogger(__name__)


class ProducerError(PipelineError):
    """The producer could not go on (a record that cannot be sent at all)."""


@dataclass
class ProduceReport:
    """What a producer run did: every record sent is acknowledged, failed or undelivered.

    ``first_unacknowledged`` is the 0-based position in the source of the first
    record Kafka did not acknowledge (None when all were): resume the same
    deterministic source there (``--skip``) to send the rest; records sent twice are
    removed downstream by event id.
    """

    topic: str
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    interrupted: bool = False
    stopped_because: str = ""
    first_unacknowledged: int | None = None
    # Of the records sent before first_unacknowledged, how many counted towards
    # max_records (with ticks and news merged, only the ticks do): what a resume
    # subtracts from the bound.
    counted_before_resume: int = 0
    skipped: int = 0
    sent_by_topic: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0

    @property
    def undelivered(self) -> int:
        """Sent but neither acknowledged nor reported failed when the run ended."""
        return max(0, self.sent - self.delivered - self.failed)

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.undelivered == 0 and not self.stopped_because

    def summary(self) -> str:
        state = " (interrupted)" if self.interrupted else ""
        where = (
            f"topic {self.topic!r}"
            if len(self.sent_by_topic) <= 1
            else "topics " + ", ".join(f"{t!r} ({n:,})" for t, n in self.sent_by_topic.items())
        )
        text = (
            f"produced {self.delivered:,} of {self.sent:,} records to {where} in "
            f"{self.seconds:.1f}s ({self.rate:,.0f}/s): {self.delivered:,} acknowledged, "
            f"{self.failed:,} failed, {self.undelivered:,} unconfirmed{state}"
        )
        if self.stopped_because:
            text += f"; stopped: {self.stopped_because}"
        if self.errors and self.errors[0] != self.stopped_because:
            text += f"; first error: {self.errors[0]}"
        if self.first_unacknowledged is not None:
            text += (
                f"\nNOT DELIVERED: {self.failed + self.undelivered:,} records. The first is "
                f"record #{self.first_unacknowledged:,} of the source: re-run the same source "
                f"with --skip {self.first_unacknowledged} to send the rest (copies of records "
                "already acknowledged are removed downstream by event id)."
            )
        return text


def produce(
    settings: Settings,
    records: Iterable[Any],
    max_records: int | None = None,
    duration: float | None = None,
    rate: float | None = None,
    progress: bool = False,
    topic: str | None = None,
    speed: float | None = None,
    ensure: bool = True,
    skip: int = 0,
    on_acknowledged: Callable[[int], None] | None = None,
    **producer_overrides: Any,
) -> ProduceReport:
    """Send ``records`` to Kafka and wait until every one is acknowledged or failed.

    ``rate`` limits messages per second (for live demos), ``speed`` paces event time
    (``speed=60``: a minute of events per second); ``max_records`` and
    ``duration`` bound the run (with ticks and news merged, ``max_records`` counts
    the ticks and the news published among them ride along); ``skip`` drops that
    many records of the source first (to resume after a failure). Each record goes
    to its stream's topic (``topic`` sends every record there instead); ``ensure``
    creates a topic before its first record.
    ``on_acknowledged`` is called (on the client's I/O thread) with the source position
    of each record Kafka acknowledged: what a caller may count on having landed.

    Never raises for delivery problems: a broker outage longer than the delivery
    timeout (``PIPELINE_DELIVERY_TIMEOUT_S``) ends the run with the counts in the
    report (``ok`` is False) and the position to resume from.
    """
    from kafka.errors import KafkaError, KafkaTimeoutError

    if skip < 0:
        raise ProducerError(f"skip must be >= 0, got {skip}")
    # type -> topic, encoder, headers (the stream's contract stamp)
    destinations: dict[type, tuple[str, Callable[..., bytes], list]] = {}

    def destination(record: Any) -> tuple[str, Callable[..., bytes], list]:
        """Where a record goes, how it is encoded and stamped, looked up once per type."""
        found = destinations.get(type(record))
        if found is None:
            kind = stream_of(record)
            name = topic or route(settings, kind).topic
            if ensure:
                ensure_topic(settings, name)
            report.sent_by_topic.setdefault(name, 0)
            found = destinations[type(record)] = (name, kind.encode, [contract.stamp(kind)])
        return found

    report = ProduceReport(topic=topic or settings.topic, skipped=skip)
    producer = kafka_producer(settings, **producer_overrides)
    unacknowledged: set[int] = set()  # source positions sent, not yet acknowledged
    first_failed: list[int] = []
    refused: list[str] = []  # an authorization refusal (set on the client's I/O thread)

    def delivered(index: int, _metadata: Any) -> None:
        report.delivered += 1
        unacknowledged.discard(index)
        if on_acknowledged is not None:
            on_acknowledged(index)

    def failed(index: int, topic: str, error: Exception) -> None:
        report.failed += 1
        unacknowledged.discard(index)
        if not first_failed or index < first_failed[0]:
            first_failed[:] = [index]
        denied = access_denied(settings, error, "WRITE", topic)
        if denied is not None and not refused:
            refused.append(str(denied))  # every later send would be refused alike: stop
        if len(report.errors) < 5:
            report.errors.append(str(denied) if denied else f"{type(error).__name__}: {error}")

    source = iter(records)
    for _ in range(skip):
        if next(source, None) is None:
            break
    counted_type = getattr(records, "counted", None)
    counted_flags = bytearray()  # per record sent: does it count towards max_records?
    stream = bounded(
        paced(source, rate=rate, speed=speed),
        max_records=max_records,
        duration=duration,
        progress=progress,
        description=f"produce → {topic or settings.topic}",
        counted=counted_type,
    )
    started = time.perf_counter()
    index = skip
    try:
        for record in stream:
            if refused:
                report.stopped_because = refused[0]
                break
            target, encode, headers = destination(record)
            value = encode(record, produced_at=datetime.now(UTC))
            try:
                future = producer.send(
                    target, key=record.symbol.encode(), value=value, headers=headers
                )
            except KafkaTimeoutError as error:
                # No buffer space or metadata for max_block_ms: the brokers are away
                # longer than the delivery timeout. Stop; what is buffered is flushed.
                report.stopped_because = (
                    f"Kafka did not accept records for {settings.delivery_timeout_s:g}s "
                    f"({error}); is the broker up?"
                )
                first_failed[:] = [min([index, *first_failed])]
                break
            except KafkaError as error:
                denied = access_denied(settings, error, "WRITE", target)
                report.stopped_because = (
                    str(denied) if denied else f"send failed: {type(error).__name__}: {error}"
                )
                first_failed[:] = [min([index, *first_failed])]
                break
            unacknowledged.add(index)
            future.add_callback(delivered, index).add_errback(failed, index, target)
            report.sent += 1
            report.sent_by_topic[target] += 1
            counted_flags.append(counted_type is None or isinstance(record, counted_type))
            index += 1
    except KeyboardInterrupt:
        report.interrupted = True
    finally:
        _finish(producer, settings, report)
        if refused and not report.stopped_because.startswith("Kafka refused"):
            report.stopped_because = refused[0]  # it arrived after the last send
        report.seconds = time.perf_counter() - started
        if len(report.sent_by_topic) == 1:
            report.topic = next(iter(report.sent_by_topic))
        pending = min(unacknowledged, default=None)
        candidates = [i for i in (pending, *first_failed) if i is not None]
        report.first_unacknowledged = min(candidates) if candidates else None
        resume = report.first_unacknowledged
        report.counted_before_resume = sum(counted_flags[: (resume or index) - skip])
    return report


def send_raw(
    settings: Settings, value: bytes, key: bytes | None = None, stream: str = "ticks"
) -> None:
    """Send one message exactly as given (no validation) to a stream's topic: how a
    class makes a bad record on purpose, to watch the consumer dead-letter it."""
    producer = kafka_producer(settings)
    try:
        topic = route(settings, stream).topic
        producer.send(topic, key=key, value=value).get(timeout=settings.delivery_timeout_s)
    finally:
        producer.close(timeout=10)


def _finish(producer: Any, settings: Settings, report: ProduceReport) -> None:
    """Flush within the delivery timeout (plus a margin), then close; never raise."""
    from kafka.errors import KafkaError

    try:
        producer.flush(timeout=settings.delivery_timeout_s + 10)
    except KafkaError as error:
        log.info("flush did not complete: %s", error)
        if not report.stopped_because:
            report.stopped_because = (
                f"records still unacknowledged after {settings.delivery_timeout_s:g}s"
            )
    except KeyboardInterrupt:
        report.interrupted = True
    try:
        producer.close(timeout=5)
    except Exception as error:  # closing must not hide the report
        log.info("closing the producer failed (%s); forcing it closed", error)
        force_close(producer)


def force_close(producer: Any) -> None:
    """Close a producer whose buffer cannot drain (kafka-python's close() flushes first
    and raises, leaving its sender thread running and a traceback at exit)."""
    sender = getattr(producer, "_sender", None)
    if sender is not None:
        sender.force_close()
    unregister = getattr(producer, "_unregister_cleanup", None)
    if unregister is not None:
        unregister()
    producer._closed = True
