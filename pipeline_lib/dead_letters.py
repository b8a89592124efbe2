"""The dead-letter topic: records the pipeline could not accept, kept verbatim.

Like Kafka Connect's dead-letter queues, the original key and value bytes are
copied unchanged (so a fixed record can be replayed), and the context travels in
headers: ``dlq.reason``, ``dlq.field``, ``dlq.stage`` (decode, bigquery, ...),
``dlq.topic``, ``dlq.partition``, ``dlq.offset``, ``dlq.at``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pipeline_lib.config import Settings
from pipeline_lib.sinks import Rejected, SinkUnavailable


@dataclass
class DeadLetter:
    """One record read back from the dead-letter topic."""

    reason: str
    field: str
    stage: str
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    dlq_offset: int


class DeadLetterWriter:
    """Sends rejected records to the dead-letter topic; ``flush()`` before committing."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = settings.dead_letter_topic
        self._producer: Any = None
        self._pending: list[Any] = []

    def _send(self, key: bytes | None, value: bytes | None, headers: dict[str, str]) -> None:
        if self._producer is None:
            from pipeline_lib.producer import kafka_producer

            self._producer = kafka_producer(self.settings, linger_ms=5, compression_type=None)
        stamped = {**headers, "dlq.at": datetime.now(UTC).isoformat()}
        future = self._producer.send(
            self.topic,
            key=key,
            value=value if value is not None else b"",
            headers=[(k, v.encode()) for k, v in stamped.items()],
        )
        self._pending.append(future)

    def send(self, message: Any, reason: str, field: str | None, stage: str) -> None:
        """Dead-letter a consumed Kafka message."""
        self._send(
            message.key,
            message.value,
            {
                "dlq.reason": reason,
                "dlq.field": field or "",
                "dlq.stage": stage,
                "dlq.topic": message.topic,
                "dlq.partition": str(message.partition),
                "dlq.offset": str(message.offset),
            },
        )

    def send_rejected(self, rejected: Rejected, stage: str) -> None:
        """Dead-letter a record a sink refused."""
        self._send(
            None,
            rejected.value,
            {
                "dlq.reason": rejected.reason,
                "dlq.field": "",
                "dlq.stage": stage,
                "dlq.topic": rejected.topic,
                "dlq.partition": str(rejected.partition),
                "dlq.offset": str(rejected.offset),
            },
        )

    def flush(self, timeout: float = 30.0) -> int:
        """Wait until every pending dead letter is acknowledged; returns how many."""
        if not self._pending:
            return 0
        self._producer.flush(timeout=timeout)
        failures = [f.exception for f in self._pending if f.failed()]
        count = len(self._pending)
        if failures:
            raise SinkUnavailable(
                f"{len(failures)} dead letters could not be written to {self.topic!r} "
                f"({failures[0]}); nothing was committed."
            )
        self._pending.clear()
        return count

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=10)
            self._producer = None


def read_dead_letters(
    settings: Settings, limit: int = 1000, timeout: float = 5.0
) -> list[DeadLetter]:
    """Read the dead-letter topic from the beginning (no consumer group, no commits)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        consumer_timeout_ms=int(timeout * 1000),
        bootstrap_timeout_ms=10_000,
    )
    try:
        partitions = consumer.partitions_for_topic(settings.dead_letter_topic) or set()
        assigned = [TopicPartition(settings.dead_letter_topic, p) for p in sorted(partitions)]
        if not assigned:
            return []
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        ends = consumer.end_offsets(assigned)
        if all(consumer.position(tp) >= ends[tp] for tp in assigned):
            return []
        letters = []
        for message in consumer:
            headers = {k: v.decode() for k, v in (message.headers or [])}
            letters.append(
                DeadLetter(
                    reason=headers.get("dlq.reason", ""),
                    field=headers.get("dlq.field", ""),
                    stage=headers.get("dlq.stage", ""),
                    topic=headers.get("dlq.topic", ""),
                    partition=int(headers.get("dlq.partition", -1)),
                    offset=int(headers.get("dlq.offset", -1)),
                    key=message.key,
                    value=message.value,
                    dlq_offset=message.offset,
                )
            )
            done = all(consumer.position(tp) >= ends[tp] for tp in assigned)
            if len(letters) >= limit or done:
                break
        return letters
    finally:
        consumer.close()
