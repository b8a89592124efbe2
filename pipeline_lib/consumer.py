"""Kafka → micro-batches → GCS + BigQuery → commit. Nothing lost, nothing doubled.

One :class:`SinkConsumer` is one member of a consumer group; scaling out is running
more of them with the same group id (up to the topic's partition count).

Per batch, in this order:

1. a batch closes when it holds ``batch_size`` records **or** its oldest record has
   waited ``flush_interval`` seconds — checked on every poll, and polls time out
   quickly, so the time flush fires even when no new message arrives;
2. every sink writes the whole batch (retrying transient failures with backoff);
3. rejected records (undecodable, invalid, or refused by BigQuery) are on the
   dead-letter topic, flushed;
4. only then are the offsets committed.

Steps 2–3 of one batch run in a background thread while the consumer keeps polling
and decoding the next batch (at most one batch in flight; commits stay in order on
the consumer's own thread), so sink latency overlaps with Kafka reads.

A crash anywhere before 4 means the batch is read again: GCS objects are named by
partition and first offset (the replay overwrites them) and BigQuery queries go
through the dedup view, so each event is seen exactly once. A sink that stays down
stops the consumer with :class:`~pipeline_lib.sinks.SinkUnavailable`, uncommitted.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kafka import ConsumerRebalanceListener
from kafka.errors import CommitFailedError

from pipeline_lib.clients import broker_unreachable, ensure_topic
from pipeline_lib.config import Settings
from pipeline_lib.dead_letters import DeadLetterWriter
from pipeline_lib.schema import InvalidRecord, decode
from pipeline_lib.sinks import Batch, PartitionBatch, Sink, WriteResult

log = logging.getLogger(__name__)
SESSION_TIMEOUT_S = 15.0


@dataclass
class BatchReport:
    """What one committed batch did, passed to ``on_batch`` callbacks.

    ``seconds`` is the time spent writing and committing, ``age`` how long the
    batch's oldest record had waited when the batch closed.
    """

    number: int
    records: int
    dead_letters: int
    results: list[WriteResult]
    committed: dict[int, int]
    seconds: float
    age: float


@dataclass
class ConsumeReport:
    """What a consumer run did."""

    topic: str
    group: str
    consumed: int = 0
    written: int = 0
    dead_letters: int = 0
    batches: int = 0
    seconds: float = 0.0
    locations: list[str] = field(default_factory=list)
    committed: dict[int, int] = field(default_factory=dict)
    stopped_because: str = ""
    lag: int | None = None
    active_seconds: float = 0.0  # first record received → last commit

    @property
    def rate(self) -> float:
        return self.consumed / self.seconds if self.seconds else 0.0

    @property
    def active_rate(self) -> float:
        """Records per second while there was work (excludes group join and idle time)."""
        return self.consumed / self.active_seconds if self.active_seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "group": self.group,
            "consumed": self.consumed,
            "written": self.written,
            "dead_letters": self.dead_letters,
            "batches": self.batches,
            "seconds": round(self.seconds, 3),
            "active_seconds": round(self.active_seconds, 3),
            "objects": [x for x in self.locations if x.startswith("gs://")],
            "committed": {str(p): o for p, o in sorted(self.committed.items())},
            "stopped_because": self.stopped_because,
            "lag": self.lag,
        }

    def summary(self) -> str:
        objects = [x for x in self.locations if x.startswith("gs://")]
        tables = sorted({x for x in self.locations if x.startswith("bq://")})
        lines = [
            f"consumed {self.consumed:,} records from {self.topic!r} (group {self.group!r}) in "
            f"{self.seconds:.1f}s ({self.rate:,.0f}/s); stopped: {self.stopped_because}",
            f"  wrote {self.written:,} records in {self.batches} batches; "
            f"{self.dead_letters} to the dead-letter topic; lag now: {self.lag}",
            f"  GCS: {len(objects)} objects" + (f", last {objects[-1]}" if objects else ""),
            f"  BigQuery: {', '.join(t[5:] for t in tables) or '-'}",
            f"  committed offsets: {dict(sorted(self.committed.items()))}",
        ]
        return "\n".join(lines)


@dataclass
class _InFlight:
    """A sealed batch being written by the sinks, with the offsets to commit after."""

    batch: Batch
    offsets: dict
    age: float
    sealed_at: float
    future: Future


class _Buffer:
    """Messages of one partition since the last commit."""

    __slots__ = ("last_offset", "opened", "part")

    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self.part = PartitionBatch(topic, partition, offset)
        self.last_offset = offset - 1
        self.opened = time.monotonic()


class SinkConsumer:
    """A consumer-group member that lands micro-batches in the sinks, then commits."""

    def __init__(
        self,
        settings: Settings,
        sinks: Sequence[Sink] | None = None,
        batch_size: int = 10_000,
        flush_interval: float = 1.0,
        topic: str | None = None,
        group: str | None = None,
        on_batch: Callable[[BatchReport], None] | None = None,
        before_commit: Callable[[Batch], None] | None = None,
    ) -> None:
        if batch_size < 1 or flush_interval <= 0:
            raise ValueError("batch_size must be >= 1 and flush_interval > 0")
        self.settings = settings
        self.topic = topic or settings.topic
        self.group = group or settings.consumer_group
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.on_batch = on_batch
        self.before_commit = before_commit
        if sinks is None:
            from pipeline_lib.sinks.bigquery import BigQuerySink
            from pipeline_lib.sinks.gcs import GcsSink

            sinks = [GcsSink(settings), BigQuerySink(settings)]
        self.sinks = list(sinks)
        self.dead_letters = DeadLetterWriter(settings)
        self._buffers: dict[int, _Buffer] = {}
        self._buffered = 0
        self._stop = threading.Event()
        self._consumer: Any = None
        self._report: ConsumeReport | None = None
        self._assigned_at = 0.0
        self._revoked: set[int] = set()
        self._last_commit_at = 0.0
        self._inflight: _InFlight | None = None
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="sink-writer")

    # --- control --------------------------------------------------------------------

    def stop(self) -> None:
        """Ask a running :meth:`run` to flush, commit and return (thread-safe)."""
        self._stop.set()

    def _connect(self) -> Any:
        from kafka import KafkaConsumer
        from kafka.errors import KafkaError

        try:
            consumer = KafkaConsumer(
                bootstrap_servers=self.settings.kafka_bootstrap_servers,
                group_id=self.group,
                client_id=f"stock-pipeline-sink-{self.group}",
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_poll_records=min(self.batch_size, 5000),
                fetch_max_bytes=64 * 1024 * 1024,
                max_partition_fetch_bytes=8 * 1024 * 1024,
                session_timeout_ms=int(SESSION_TIMEOUT_S * 1000),
                heartbeat_interval_ms=3_000,
                bootstrap_timeout_ms=10_000,
            )
        except KafkaError as error:
            raise broker_unreachable(self.settings, error) from error
        consumer.subscribe([self.topic], listener=_RebalanceListener(self))
        return consumer

    # --- the loop -------------------------------------------------------------------

    def run(
        self,
        max_records: int | None = None,
        until_idle: float | None = None,
        duration: float | None = None,
        progress: bool = False,
        handle_signals: bool = True,
    ) -> ConsumeReport:
        """Consume until a bound is reached or :meth:`stop` / Ctrl-C / SIGTERM.

        ``until_idle``: stop once caught up and no message arrived for that many
        seconds. ``max_records``: stop after at least that many records. ``duration``:
        stop after that many seconds. The open batch is always flushed and committed.
        """
        ensure_topic(self.settings, self.topic)
        ensure_topic(self.settings, self.settings.dead_letter_topic, partitions=1)
        for sink in self.sinks:
            sink.setup()
        report = self._report = ConsumeReport(topic=self.topic, group=self.group)
        restore = self._install_signal_handlers() if handle_signals else None
        bar = _progress_bar(max_records, self.topic) if progress else None
        started = time.monotonic()
        last_message = started
        first_message: float | None = None
        last_lag_check = 0.0
        self._consumer = self._connect()
        try:
            while True:
                poll_started = time.monotonic()
                polled = self._consumer.poll(timeout_ms=self._poll_timeout_ms())
                if self._revoked:
                    self._drop_revoked()
                received = self._take(polled)
                now = time.monotonic()
                if received:
                    last_message = now
                    if first_message is None:
                        first_message = poll_started
                    report.consumed += received
                    if bar is not None:
                        bar.update(received)
                self._complete(block=False)
                if self._due(now):
                    self._complete()  # at most one batch in flight
                    self._seal()
                if bar is not None and now - last_lag_check > 2:
                    last_lag_check = now
                    report.lag = self.lag()
                    bar.set_postfix(batches=report.batches, dlq=report.dead_letters, lag=report.lag)
                reason = self._stop_reason(report, max_records)
                if reason is None and until_idle is not None:
                    reason = self._idle_reason(
                        now, max(last_message, self._assigned_at), until_idle
                    )
                if reason is None and duration is not None and now - started >= duration:
                    reason = f"duration {duration:g}s reached"
                if reason:
                    report.stopped_because = reason
                    break
        except KeyboardInterrupt:
            report.stopped_because = "interrupted"
        except BaseException as error:
            report.stopped_because = f"error: {type(error).__name__}"
            self._buffers.clear()  # uncommitted: a restart re-reads it
            self._buffered = 0
            self._inflight = None
            raise
        finally:
            try:
                # After an error the open batch stays uncommitted: a restart re-reads it.
                if not report.stopped_because.startswith("error"):
                    self._flush()
                report.lag = self.lag()
            finally:
                if first_message is not None:
                    report.active_seconds = self._last_commit_at - first_message
                self._close(restore, bar)
                report.seconds = time.monotonic() - started
        return report

    def _stop_reason(self, report: ConsumeReport, max_records: int | None) -> str | None:
        if self._stop.is_set():
            return "stop requested"
        if max_records is not None and report.consumed >= max_records:
            return f"{max_records:,} records reached"
        return None

    def _idle_reason(self, now: float, last_activity: float, until_idle: float) -> str | None:
        """Caught up on the assigned partitions and nothing new for ``until_idle`` s.

        Right after start or a rebalance there may be no assignment yet (the group
        waits for a dead member's session to expire): that is not idle, unless it
        lasts well past the session timeout (more members than partitions).
        """
        idle = now - last_activity
        if idle < until_idle or self._buffers or self._inflight:
            return None
        if self._consumer.assignment():
            return f"caught up and idle for {until_idle:g}s" if self.lag() == 0 else None
        if idle >= until_idle + 2 * SESSION_TIMEOUT_S:
            return f"no partitions assigned for {idle:.0f}s"
        return None

    def _poll_timeout_ms(self) -> int:
        """Short polls: a time-based flush must never wait for the next message."""
        if not self._buffers:
            return 200
        oldest = min(b.opened for b in self._buffers.values())
        remaining = oldest + self.flush_interval - time.monotonic()
        return int(max(0.0, min(remaining, 0.2)) * 1000)

    def _due(self, now: float) -> bool:
        if not self._buffers:
            return False
        if self._buffered >= self.batch_size:
            return True
        return now - min(b.opened for b in self._buffers.values()) >= self.flush_interval

    def _take(self, polled: dict) -> int:
        """Buffer polled messages; invalid ones go to the dead-letter writer at once."""
        count = 0
        for tp, messages in polled.items():
            buffer = self._buffers.get(tp.partition)
            for message in messages:
                if buffer is None:
                    buffer = _Buffer(tp.topic, tp.partition, message.offset)
                    self._buffers[tp.partition] = buffer
                buffer.last_offset = message.offset
                try:
                    tick = decode(message.value)
                except InvalidRecord as error:
                    self.dead_letters.send(message, error.reason, error.field, stage="decode")
                    continue
                part = buffer.part
                part.ticks.append(tick)
                part.values.append(message.value)
                part.offsets.append(message.offset)
                self._buffered += 1
            count += len(messages)
        return count

    def _seal(self) -> None:
        """Close the open batch and start writing it to the sinks in the background.

        At most one batch is in flight: the main thread keeps polling and decoding the
        next one while the sinks wait on the network, and commits stay on the main
        thread, in order, after the writes (see :meth:`_complete`).
        """
        from kafka.structs import OffsetAndMetadata, TopicPartition

        now = time.monotonic()
        batch = Batch([b.part for b in self._buffers.values()], datetime.now(UTC))
        offsets = {
            TopicPartition(self.topic, p): OffsetAndMetadata(b.last_offset + 1, "", -1)
            for p, b in self._buffers.items()
        }
        age = now - min(b.opened for b in self._buffers.values())
        self._buffers.clear()
        self._buffered = 0
        future = self._writer.submit(lambda: [sink.write(batch) for sink in self.sinks])
        self._inflight = _InFlight(batch, offsets, age, now, future)

    def _complete(self, block: bool = True) -> None:
        """Commit the in-flight batch once every sink wrote it (raise if one failed)."""
        inflight = self._inflight
        if inflight is None or (not block and not inflight.future.done()):
            return
        self._inflight = None
        results = inflight.future.result()  # re-raises SinkUnavailable: nothing committed
        for result in results:
            for rejected in result.rejected:
                self.dead_letters.send_rejected(rejected, stage=result.sink)
        dead = self.dead_letters.flush()
        if self.before_commit is not None:
            self.before_commit(inflight.batch)
        try:
            self._consumer.commit(inflight.offsets)
        except CommitFailedError as error:
            # A rebalance moved partitions meanwhile: the new owners re-read this batch
            # from the last commit (the sinks overwrite / de-duplicate it); what we read
            # after it is dropped and re-read too, so nothing is skipped.
            log.warning("commit refused after a rebalance (%s); batch will be re-read", error)
            self._buffers.clear()
            self._buffered = 0
            self._rewind()
            return
        self._last_commit_at = time.monotonic()
        committed = {tp.partition: o.offset for tp, o in inflight.offsets.items()}
        report = self._report
        if report is not None:
            report.batches += 1
            refused = {(r.partition, r.offset) for result in results for r in result.rejected}
            report.written += len(inflight.batch) - len(refused)
            report.dead_letters += dead
            report.committed.update(committed)
            report.locations.extend(loc for r in results for loc in r.locations)
            if self.on_batch is not None:
                self.on_batch(
                    BatchReport(
                        report.batches,
                        len(inflight.batch),
                        dead,
                        results,
                        committed,
                        time.monotonic() - inflight.sealed_at,
                        inflight.age,
                    )
                )

    def _flush(self) -> None:
        """Write and commit everything read so far (waits for the in-flight batch)."""
        self._complete()
        if self._buffers:
            self._seal()
            self._complete()

    def _rewind(self) -> None:
        """Seek every assigned partition back to its committed offset."""
        from kafka.errors import KafkaError

        try:
            for tp in self._consumer.assignment():
                committed = self._consumer.committed(tp)
                if committed is None:
                    self._consumer.seek_to_beginning(tp)
                else:
                    self._consumer.seek(tp, committed)
        except KafkaError as error:  # a rebalance in progress resets positions anyway
            log.warning("rewind after a refused commit failed: %s", error)

    def _drop_revoked(self) -> None:
        """Forget buffered messages of partitions taken away by a rebalance."""
        while self._revoked:
            buffer = self._buffers.pop(self._revoked.pop(), None)
            if buffer is not None:
                self._buffered -= len(buffer.part.ticks)
                log.info(
                    "partition %d revoked: its uncommitted batch will be re-read",
                    buffer.part.partition,
                )

    def lag(self) -> int | None:
        """Messages on the assigned partitions not yet read (None if unknown)."""
        consumer = self._consumer
        if consumer is None:
            return None
        try:
            assigned = consumer.assignment()
            if not assigned:
                return 0
            ends = consumer.end_offsets(list(assigned))
            return sum(max(0, ends[tp] - consumer.position(tp)) for tp in assigned)
        except Exception:  # lag is informative only
            return None

    def _close(self, restore: Callable[[], None] | None, bar: Any) -> None:
        try:
            if self._consumer is not None:
                self._consumer.close(autocommit=False)
        finally:
            self._consumer = None
            self._writer.shutdown(wait=True)
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="sink-writer")
            self.dead_letters.close()
            for sink in self.sinks:
                sink.close()
            if bar is not None:
                bar.close()
            if restore is not None:
                restore()

    def _install_signal_handlers(self) -> Callable[[], None] | None:
        """SIGTERM (and SIGINT outside Jupyter) → flush, commit, return."""
        if threading.current_thread() is not threading.main_thread():
            return None
        previous = signal.getsignal(signal.SIGTERM)

        def on_term(signum: int, frame: Any) -> None:
            self._stop.set()

        signal.signal(signal.SIGTERM, on_term)
        return lambda: signal.signal(signal.SIGTERM, previous)


class _RebalanceListener(ConsumerRebalanceListener):
    """Note revoked partitions; the consumer's own thread drops their buffers.

    kafka-python runs these callbacks on its IO loop, so they must not block (a
    flush or a commit from here would deadlock). Dropping is safe: the records were
    not committed, so the new owner re-reads them, and the sinks are replay-safe.
    """

    def __init__(self, owner: SinkConsumer) -> None:
        self.owner = owner

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.owner._revoked.update(tp.partition for tp in revoked)

    def on_partitions_lost(self, lost: Any) -> None:
        self.on_partitions_revoked(lost)

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.owner._assigned_at = time.monotonic()


def _progress_bar(total: int | None, topic: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"consume ← {topic}", unit="rec", mininterval=0.5)


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
) -> ConsumeReport:
    """Run one consumer into GCS and BigQuery until a bound is reached."""
    from pipeline_lib.sinks.bigquery import BigQuerySink
    from pipeline_lib.sinks.gcs import GcsSink

    consumer = SinkConsumer(
        settings,
        sinks=[GcsSink(settings, file_format=file_format), BigQuerySink(settings)],  # type: ignore[arg-type]
        batch_size=batch_size,
        flush_interval=flush_interval,
        on_batch=on_batch,
    )
    return consumer.run(
        max_records=max_records, until_idle=until_idle, duration=duration, progress=progress
    )
