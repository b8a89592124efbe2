"""Sealed batches → sinks → dead letters → commit, strictly in order: the committer.

In the spirit of quix-streams' ``Checkpoint``: what it works with is passed in (the
batching core, the sinks, the dead-letter writer, the membership fence, a way to
reach the current Kafka consumer, a clock and a sleep), so every path of writing
and committing runs in unit tests with fakes.

Per batch, in this order: every sink writes the whole batch, side by side on writer
threads, each after the fence confirmed the membership; then, on the consumer's
thread and in the order the batches were sealed, the fence is checked again, the
batch's dead letters (decode failures and rows a sink refused, with their original
key) are sent and flushed, and only then are its offsets committed. A commit the
group refuses, or a fence that fails, drops everything held and seeks each owned
partition back to its committed offset: nothing is skipped, and what was written
is written again (the sinks replace or de-duplicate it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

from pipeline_lib.core.errors import PipelineError
from pipeline_lib.core.retry import COMMIT_BACKOFF
from pipeline_lib.kafka_io.batching import Batcher, SealedBatch
from pipeline_lib.kafka_io.membership import Fence, Fenced
from pipeline_lib.kafka_io.reports import BatchReport, ConsumeReport
from pipeline_lib.records.batches import Batch, WriteResult
from pipeline_lib.sinks import Sink

log = logging.getLogger(__name__)


class ConsumerError(PipelineError):
    """The consumer cannot go on (bad bounds, commits failing); nothing was skipped."""


def seek(consumer: Any, topic: str, targets: dict[int, int | None]) -> None:
    """Seek each partition to an offset, or to its committed offset for ``None``."""
    from kafka.structs import TopicPartition

    for partition, offset in targets.items():
        tp = TopicPartition(topic, partition)
        if offset is None:
            offset = consumer.committed(tp)
        if offset is None:
            consumer.seek_to_beginning(tp)  # nothing committed: auto_offset_reset
        else:
            consumer.seek(tp, offset)


def owned(consumer: Any, topic: str) -> set[int]:
    """The partitions of ``topic`` assigned to ``consumer``."""
    return {tp.partition for tp in consumer.assignment() if tp.topic == topic}


class Committer:
    """Writes sealed batches and commits them in the order they were sealed."""

    def __init__(
        self,
        core: Batcher,
        sinks: Sequence[Sink],
        dead_letters: Any,
        fence: Fence,
        consumer: Callable[[], Any],
        *,
        commit_retry_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        on_batch: Callable[[BatchReport], None] | None = None,
        before_commit: Callable[[Batch], None] | None = None,
    ) -> None:
        self.core = core
        self.topic = core.topic
        self.sinks = list(sinks)
        self.dead_letters = dead_letters
        self.fence = fence
        self._consumer = consumer  # the current Kafka consumer (replaced on reconnect)
        self.commit_retry_s = commit_retry_s
        self.clock = clock
        self.sleep = sleep
        self.on_batch = on_batch
        self.before_commit = before_commit
        self.report: ConsumeReport | None = None  # of the current run
        self.last_commit_at = 0.0
        self._pool = self._new_pool()
        for sink in self.sinks:  # a sink re-checks right before it publishes a batch
            sink.fence_check = fence.check

    # --- writing ------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """Some batch is being written or waits for its commit (the core's batches in
        flight, and dropped ones whose writes still run)."""
        return bool(self.core.inflight) or any(
            not f.done() for sealed in self.core.dropped for f in sealed.writes or []
        )

    def _new_pool(self) -> ThreadPoolExecutor:
        # One thread per sink per batch in flight: the sinks of a batch run side by
        # side, and the next batch is written while a slow load job finishes.
        workers = max(1, len(self.sinks)) * self.core.max_inflight
        return ThreadPoolExecutor(workers, thread_name_prefix="sink-writer")

    def write(self, sealed: SealedBatch) -> None:
        """Start writing a sealed batch to every sink, in the background."""
        sealed.writes = [self._pool.submit(self._write_one, sink, sealed) for sink in self.sinks]

    def _write_one(self, sink: Sink, sealed: SealedBatch) -> WriteResult:
        self.fence.check(sealed.generation, f"writing batch {sealed.number} to {sink.name}")
        started = self.clock()
        result = sink.write(sealed.batch)
        self._time(f"sink:{sink.name}", started)
        return result

    def settle(self) -> None:
        """Wait for the writes of dropped batches: a late write of this member must
        not land after a newer one of the same objects (same generation, fewer records).
        Their outcome does not matter: they are not committed, and are read again."""
        for sealed in self.core.dropped:
            for write in sealed.writes or []:
                wait([write])
                if write.exception() is not None:
                    log.warning(
                        "batch %d, dropped uncommitted, failed to write: %s",
                        sealed.number,
                        write.exception(),
                    )
        self.core.dropped.clear()

    def _time(self, stage: str, started: float) -> None:
        if self.report is not None:
            self.report.add_time(stage, self.clock() - started)

    # --- committing ---------------------------------------------------------------

    def complete(self, block: bool = True) -> None:
        """Commit finished batches, oldest first (raise if a sink failed).

        ``block``: wait for the oldest batch in flight and commit it; else commit, in
        order, only what is already written.
        """
        while self.core.inflight:
            sealed = self.core.inflight[0]
            if sealed.writes is None:  # sealed, then interrupted before it was handed over
                self.write(sealed)
            if not block and not all(f.done() for f in sealed.writes):
                return
            # re-raises SinkUnavailable: this batch and the later ones stay uncommitted
            try:
                results = [f.result() for f in sealed.writes]
            except Fenced as error:
                wait(sealed.writes)  # the other sinks of the batch finish (or are fenced)
                self.drop(error)  # everything in flight is dropped with it
                continue
            self._commit_written(sealed, results)
            if block:
                return

    def flush(self) -> None:
        """Commit every batch in flight (waits for their writes)."""
        while self.core.inflight:
            self.complete()

    def drop(self, error: Fenced) -> None:
        """Everything held may belong to a membership the group has ended: drop it,
        uncommitted, and read again from the committed offsets."""
        log.warning("%s; dropping what is held and re-reading from the last commit", error)
        self._rewind(fenced=True)

    def _rewind(self, fenced: bool = False) -> None:
        """Drop everything held (uncommitted) and seek each owned partition back to its
        committed offset: after a refused commit, or a fence that failed."""
        consumer = self._consumer()
        seek(consumer, self.topic, self.core.rewind(owned(consumer, self.topic), fenced=fenced))

    def _send_dead_letters(self, sealed: SealedBatch, results: list[WriteResult]) -> int:
        """In commit order: the batch's dead letters, then those the sinks refused, flushed."""
        started = self.clock()
        for letter in sealed.dead_letters:
            self.dead_letters.send(letter)
        for result in results:
            for refused in result.rejected:
                self.dead_letters.send(refused)
        flushed = self.dead_letters.flush()
        self._time("dead_letters", started)
        return flushed

    def _commit_written(self, sealed: SealedBatch, results: list[WriteResult]) -> None:
        try:
            self.fence.check(sealed.generation, f"committing batch {sealed.number}")
        except Fenced as error:
            self.drop(error)
            return
        self._send_dead_letters(sealed, results)
        if self.before_commit is not None:
            self.before_commit(sealed.batch)
        consumer = self._consumer()
        offsets = self.core.commit_plan(owned(consumer, self.topic))
        commit_started = self.clock()
        committed = not offsets or self._commit(consumer, offsets)
        self._time("commit", commit_started)
        if not committed:
            self._rewind()
            return
        rejected = sum(1 for r in results for x in r.rejected if x.partition in offsets)
        self.core.committed_inflight(offsets, rejected=rejected)
        self.last_commit_at = self.clock()
        report = self.report
        if report is None:
            return
        report.committed.update(offsets)
        report.locations.extend(loc for r in results for loc in r.locations)
        if self.on_batch is not None:
            self.on_batch(
                BatchReport(
                    sealed.number,
                    sealed.covered(offsets),
                    sealed.dead_letters_in(offsets, rejected),
                    results,
                    dict(offsets),
                    self.clock() - sealed.sealed_at,
                    sealed.age,
                )
            )

    def _commit(self, consumer: Any, offsets: dict[int, int]) -> bool:
        """Commit; False if the group refused it (a rebalance), retry transient errors."""
        from kafka.errors import (
            CommitFailedError,
            IllegalGenerationError,
            KafkaError,
            RebalanceInProgressError,
            UnknownMemberIdError,
        )
        from kafka.structs import OffsetAndMetadata, TopicPartition

        plan = {
            TopicPartition(self.topic, p): OffsetAndMetadata(o, "", -1) for p, o in offsets.items()
        }
        deadline = self.clock() + self.commit_retry_s
        delays = COMMIT_BACKOFF.delays()
        while True:
            try:
                consumer.commit(plan)
                return True
            except (
                CommitFailedError,
                RebalanceInProgressError,
                IllegalGenerationError,
                UnknownMemberIdError,
            ) as error:
                # The group moved partitions meanwhile: the batch is in the sinks but not
                # committed; everything held is re-read from the last commit (the sinks
                # replace / de-duplicate it), so nothing is skipped.
                log.warning(
                    "commit refused by the group (%s); re-reading from the last commit",
                    type(error).__name__,
                )
                return False
            except KafkaError as error:
                delay = next(delays)
                if self.clock() + delay > deadline:
                    raise ConsumerError(
                        f"could not commit offsets {offsets} of {self.topic!r} for "
                        f"{self.commit_retry_s:g}s ({type(error).__name__}: {error}). The "
                        "batch is in the sinks; a restart re-reads it from the last commit "
                        "and the dedup view hides the copies. Check the brokers."
                    ) from error
                log.warning("commit failed (%s), retrying in %.1fs", error, delay)
                self.sleep(delay)

    # --- ending -------------------------------------------------------------------

    def close(self) -> None:
        """Wait for the writer threads, then close the dead-letter writer and the sinks.
        The committer can be used again (a new run)."""
        try:
            self._pool.shutdown(wait=True)
            self._pool = self._new_pool()
            self.core.dropped.clear()  # their writes have ended
            self.dead_letters.close()
        finally:
            for sink in self.sinks:
                sink.close()
