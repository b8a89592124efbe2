"""The dead-letter topic: records the pipeline could not accept, kept verbatim.

Like Kafka Connect's dead-letter queues, the original key, value and headers are
copied unchanged (so a fixed record can be replayed), and the context travels in
headers of its own: ``dlq.reason``, ``dlq.field``, ``dlq.stage`` (decode, gcs,
bigquery, ...), ``dlq.topic``, ``dlq.partition``, ``dlq.offset``, ``dlq.at``. An
original header named ``dlq.*`` is dropped (it could pose as the context), and the
original headers are dropped whole past :data:`MAX_ORIGINAL_HEADER_BYTES`
(``dlq.truncated`` then says ``headers``).

**Size bound.** A message may be larger than the dead-letter topic accepts (a
compressed 2 MB value passes the broker's limit on the way in; Kafka's default limit
is about 1 MB per record, headers included). Values above
:data:`MAX_VALUE_BYTES` (and keys above :data:`MAX_KEY_BYTES`) are cut to that size
and marked: ``dlq.truncated=value`` (or ``key``), ``dlq.original_value_bytes`` /
``dlq.original_key_bytes`` hold the original sizes, and topic, partition and offset
point at the full record in the source topic (within its retention). A broker that
refuses even that (a smaller ``max.message.bytes``) gets a second try cut to
:data:`FALLBACK_VALUE_BYTES`.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from pipeline_lib.clients.kafka import access_denied, kafka_consumer, kafka_producer
from pipeline_lib.core.config import Settings
from pipeline_lib.records.batches import DeadLetter
from pipeline_lib.records.routes import Route, route
from pipeline_lib.records.schema import iso
from pipeline_lib.sinks import SinkUnavailable

log = logging.getLogger(__name__)
MAX_VALUE_BYTES = 512 * 1024
MAX_KEY_BYTES = 1024
FALLBACK_VALUE_BYTES = 16 * 1024
MAX_HEADER_CHARS = 1000
MAX_ORIGINAL_HEADER_BYTES = 16 * 1024


def dead_letter_message(
    letter: DeadLetter, max_value: int = MAX_VALUE_BYTES
) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    """Key, value and headers of the dead letter for ``letter``, within the size bound."""
    key, value = letter.key, letter.value if letter.value is not None else b""
    headers = {
        "dlq.reason": letter.reason[:MAX_HEADER_CHARS],
        "dlq.field": (letter.field or "")[:100],
        "dlq.stage": letter.stage,
        "dlq.topic": letter.topic,
        "dlq.partition": str(letter.partition),
        "dlq.offset": str(letter.offset),
        "dlq.at": iso(datetime.now(UTC)),
    }
    truncated = []
    if len(value) > max_value:
        headers["dlq.original_value_bytes"] = str(len(value))
        value = value[:max_value]
        truncated.append("value")
    if key is not None and len(key) > MAX_KEY_BYTES:
        headers["dlq.original_key_bytes"] = str(len(key))
        key = key[:MAX_KEY_BYTES]
        truncated.append("key")
    original = [(k, v) for k, v in letter.headers if not k.startswith("dlq.")]
    if sum(len(k) + len(v or b"") for k, v in original) > MAX_ORIGINAL_HEADER_BYTES:
        original = []
        truncated.append("headers")
    if truncated:
        headers["dlq.truncated"] = ",".join(truncated)
    encoded = [(k, v.encode("utf-8", "replace")) for k, v in headers.items()]
    return key, value, original + encoded


class DeadLetterWriter:
    """Sends rejected records to the dead-letter topic; ``flush()`` before committing.

    Used from one thread (the consumer's own: the committer sends and flushes a
    batch's dead letters in commit order). No record, however large or
    strange, makes :meth:`send` raise: it is cut to size instead. Only a dead-letter
    topic that stays unreachable raises (from :meth:`flush`), and then nothing of
    the batch is committed.
    """

    def __init__(self, settings: Settings, stream: str | Route = "ticks") -> None:
        self.settings = settings
        self.topic = route(settings, stream).dead_letter_topic
        self._producer: Any = None
        self._pending: list[tuple[Any, DeadLetter]] = []

    def _send(self, letter: DeadLetter, max_value: int) -> Any:
        from kafka.errors import KafkaError

        if self._producer is None:
            self._producer = kafka_producer(self.settings, linger_ms=5)
        key, value, headers = dead_letter_message(letter, max_value)
        try:
            return self._producer.send(self.topic, key=key, value=value, headers=headers)
        except KafkaError as error:
            denied = access_denied(self.settings, error, "WRITE", self.topic)
            if denied is not None:
                raise denied from None
            if max_value > FALLBACK_VALUE_BYTES:
                log.warning("dead letter refused (%s); sending it cut to 16 KiB", error)
                return self._send(letter, FALLBACK_VALUE_BYTES)
            raise SinkUnavailable(
                f"cannot write to the dead-letter topic {self.topic!r}: {error}; nothing was "
                "committed."
            ) from error

    def send(self, letter: DeadLetter) -> None:
        """Queue one dead letter (acknowledged by :meth:`flush`)."""
        self._pending.append((self._send(letter, MAX_VALUE_BYTES), letter))

    def flush(self, timeout: float = 30.0) -> int:
        """Wait until every pending dead letter is acknowledged; returns how many."""
        from kafka.errors import KafkaError, MessageSizeTooLargeError, RecordListTooLargeError

        if not self._pending:
            return 0
        count = len(self._pending)
        for _attempt in range(2):
            try:
                self._producer.flush(timeout=timeout)
            except KafkaError as error:
                raise SinkUnavailable(
                    f"dead letters not acknowledged by {self.topic!r} within {timeout:g}s "
                    f"({error}); nothing was committed."
                ) from error
            failed = [(f, letter) for f, letter in self._pending if f.failed()]
            too_large = [
                letter
                for f, letter in failed
                if isinstance(f.exception, MessageSizeTooLargeError | RecordListTooLargeError)
            ]
            if failed and len(too_large) == len(failed):
                # The broker's limit is below ours: cut harder and try once more.
                self._pending = [(self._send(x, FALLBACK_VALUE_BYTES), x) for x in too_large]
                continue
            denied = failed and access_denied(
                self.settings, failed[0][0].exception, "WRITE", self.topic
            )
            if denied:
                raise denied
            if failed:
                raise SinkUnavailable(
                    f"{len(failed)} dead letters could not be written to {self.topic!r} "
                    f"({failed[0][0].exception}); nothing was committed."
                )
            self._pending.clear()
            return count
        raise SinkUnavailable(f"dead letters too large even when cut for {self.topic!r}")

    def close(self) -> None:
        if self._producer is not None:
            try:
                self._producer.close(timeout=10)
            except Exception as error:  # an unreachable topic: flush() already raised
                log.info("closing the dead-letter producer failed (%s); forcing it", error)
                from pipeline_lib.kafka_io.producer import force_close

                force_close(self._producer)
            finally:
                self._producer = None


def read_dead_letters(
    settings: Settings,
    limit: int = 1000,
    timeout: float = 5.0,
    stream: str | Route = "ticks",
) -> list[DeadLetter]:
    """Read a stream's dead-letter topic from the beginning (no group, no commits)."""
    from kafka import TopicPartition

    topic = route(settings, stream).dead_letter_topic
    consumer = kafka_consumer(settings, group=None, consumer_timeout_ms=int(timeout * 1000))
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not assigned:
            return []
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        ends = consumer.end_offsets(assigned)
        if all(consumer.position(tp) >= ends[tp] for tp in assigned):
            return []
        letters = []
        for message in consumer:
            raw_headers = message.headers or []
            headers = {
                k: v.decode("utf-8", "replace") for k, v in raw_headers if k.startswith("dlq.")
            }
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
                    truncated=headers.get("dlq.truncated", ""),
                    original_value_bytes=(
                        int(headers["dlq.original_value_bytes"])
                        if "dlq.original_value_bytes" in headers
                        else None
                    ),
                    headers=tuple((k, v) for k, v in raw_headers if not k.startswith("dlq.")),
                )
            )
            done = all(consumer.position(tp) >= ends[tp] for tp in assigned)
            if len(letters) >= limit or done:
                break
        return letters
    finally:
        consumer.close()
