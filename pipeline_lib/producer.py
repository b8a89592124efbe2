"""Source → Kafka. Keyed by symbol, so each symbol's ticks stay in order on one partition.

Durable by default (``acks=all`` with idempotence: a retried send is never written
twice), batched and lz4-compressed for throughput, with a delivery callback that
counts failures, and a flush before returning — also on Ctrl-C — so nothing sent is
left in the client's buffer.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pipeline_lib.clients import ConnectionFailed, broker_unreachable
from pipeline_lib.config import Settings
from pipeline_lib.schema import Tick, encode
from pipeline_lib.sources.base import bounded, paced

# Tuned on the local broker (see bench/): large batches, a short linger, lz4.
PRODUCER_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    "enable_idempotence": True,
    "linger_ms": 20,
    "batch_size": 256 * 1024,
    "compression_type": "lz4",
    "max_in_flight_requests_per_connection": 5,
    "max_block_ms": 30_000,
    "delivery_timeout_ms": 60_000,
}


@dataclass
class ProduceReport:
    """What a producer run did."""

    topic: str
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    interrupted: bool = False

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        state = " (interrupted)" if self.interrupted else ""
        text = (
            f"produced {self.delivered:,} of {self.sent:,} records to topic {self.topic!r} in "
            f"{self.seconds:.1f}s ({self.rate:,.0f}/s), {self.failed} failed{state}"
        )
        if self.errors:
            text += f"; first error: {self.errors[0]}"
        return text


def kafka_producer(settings: Settings, **overrides: Any) -> Any:
    """A KafkaProducer with the pipeline's defaults; ConnectionFailed if no broker answers."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    config = {**PRODUCER_DEFAULTS, **overrides}
    try:
        return KafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            client_id="stock-pipeline-producer",
            bootstrap_timeout_ms=10_000,
            **config,
        )
    except KafkaError as error:
        raise broker_unreachable(settings, error) from error


def produce(
    settings: Settings,
    records: Iterable[Tick],
    max_records: int | None = None,
    duration: float | None = None,
    rate: float | None = None,
    progress: bool = False,
    topic: str | None = None,
    ensure: bool = True,
    **producer_overrides: Any,
) -> ProduceReport:
    """Send ``records`` to Kafka and wait until every one is acknowledged or failed.

    ``rate`` limits messages per second (for live demos); ``max_records`` and
    ``duration`` bound the run. Creates the topic first when ``ensure`` is true.
    """
    from kafka.errors import KafkaError

    from pipeline_lib.clients import ensure_topic

    topic = topic or settings.topic
    if ensure:
        ensure_topic(settings, topic)
    report = ProduceReport(topic=topic)
    producer = kafka_producer(settings, **producer_overrides)

    def delivered(_metadata: Any) -> None:
        report.delivered += 1

    def failed(error: Exception) -> None:
        report.failed += 1
        if len(report.errors) < 5:
            report.errors.append(f"{type(error).__name__}: {error}")

    stream = bounded(
        paced(records, rate=rate),
        max_records=max_records,
        duration=duration,
        progress=progress,
        description=f"produce → {topic}",
    )
    started = time.perf_counter()
    try:
        for tick in stream:
            value = encode(tick, produced_at=datetime.now(UTC))
            future = producer.send(topic, key=tick.symbol.encode(), value=value)
            future.add_callback(delivered).add_errback(failed)
            report.sent += 1
    except KeyboardInterrupt:
        report.interrupted = True
    except KafkaError as error:
        failed(error)
        raise ConnectionFailed(
            f"Sending to {topic!r} failed after {report.sent:,} records: {error}. "
            "Records acknowledged so far are safe; re-running re-sends the rest "
            "(duplicates are removed by event id downstream)."
        ) from error
    finally:
        try:
            producer.flush(timeout=60)
        finally:
            producer.close(timeout=10)
        report.seconds = time.perf_counter() - started
    return report
