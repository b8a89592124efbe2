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

The loop here polls, feeds the broker-free core (:class:`Batcher`: buffers, seals,
positions) and hands sealed batches to the :class:`~pipeline_lib.kafka_io.committer.Committer`
(writes, dead letters, commits). The sinks of a batch write side by side on writer
threads while the consumer keeps polling and decoding (``max_inflight`` batches in
flight: 1 by default; 2 let a slow load job not hold back the next batch, but
measured slower against the emulator); dead letters and commits stay on the
consumer's own thread, strictly in the order the batches were sealed.

A crash anywhere before 4 means the batch is read again: GCS objects are named by
partition and first offset (a later owner's replay replaces them, a late writer's
never shrinks them: :mod:`pipeline_lib.sinks.gcs`) and BigQuery queries go through
the dedup view, so each event is seen exactly once. A batch is sealed only while
the group membership is confirmed, and written and committed only in the group
generation it was sealed in (:mod:`pipeline_lib.kafka_io.membership`): a member frozen past
its session timeout drops what it held when it wakes up instead of landing it. A
sink that stays down stops the consumer with
:class:`~pipeline_lib.sinks.SinkUnavailable`, uncommitted.
"""

from __future__ import annotations

import functools
import gc
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from kafka import ConsumerRebalanceListener

from pipeline_lib.clients.kafka import (
    SESSION_TIMEOUT_S,
    access_denied,
    ensure_topic,
    kafka_admin,
    kafka_consumer,
)
from pipeline_lib.core.config import Settings
from pipeline_lib.kafka_io.batching import Batcher, Counts
from pipeline_lib.kafka_io.committer import Committer, ConsumerError, owned, seek
from pipeline_lib.kafka_io.dead_letters import DeadLetterWriter
from pipeline_lib.kafka_io.membership import (
    NO_GENERATION,
    Fence,
    Fenced,
    MemberState,
    RebalanceListener,
    member_state,
)
from pipeline_lib.kafka_io.reports import BatchReport, ConsumeReport, partition_lag
from pipeline_lib.records import contract
from pipeline_lib.records.batches import Batch
from pipeline_lib.records.routes import Route, route
from pipeline_lib.records.streams import Stream
from pipeline_lib.sinks import Sink
from pipeline_lib.sinks.landing import landing_sinks

__all__ = [
    "BatchReport",
    "ConsumeReport",
    "ConsumerError",
    "SinkConsumer",
]

log = logging.getLogger(__name__)
LOAD_QUOTA_NOTE = (
    "BQ_WRITE=load on real BigQuery: a load job a minute is 1,440 a day, under the "
    "1,500 a table may run"
)


class SinkConsumer:
    """A consumer-group member that lands micro-batches in the sinks, then commits.

    The Kafka consumer, the dead-letter writer and the sinks are injected (defaults
    are built from ``settings``), so every path of the loop runs in unit tests
    without a broker; the rules that protect data live in :class:`Batcher`.
    """

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
        consumer_factory: Callable[[ConsumerRebalanceListener], Any] | None = None,
        dead_letters: Any = None,
        create_topics: bool = True,
        commit_retry_s: float = 30.0,
        max_inflight: int = 1,
        clock: Callable[[], float] = time.monotonic,
        stream: str | Stream | Route = "ticks",
    ) -> None:
        if batch_size < 1 or not flush_interval > 0:
            raise ConsumerError("batch_size must be >= 1 and flush_interval > 0")
        self.settings = settings
        self.route = route(settings, stream)
        self.stream = self.route.stream
        self.topic = topic or self.route.topic
        self.group = group or self.route.group
        self.batch_size = batch_size
        self.sinks = list(sinks) if sinks is not None else landing_sinks(settings, self.route)
        # A sink may ask for batches no more often than it can take them (load jobs on
        # real BigQuery: 1,500 a table a day): the time-based flush waits at least that.
        floor = max(
            (getattr(sink, "min_batch_interval_s", 0.0) for sink in self.sinks), default=0.0
        )
        if floor > flush_interval:
            log.warning(
                "batches at most every %gs (not %gs): %s", floor, flush_interval, LOAD_QUOTA_NOTE
            )
            flush_interval = floor
        self.flush_interval = flush_interval
        self.consumer_factory = consumer_factory or self._kafka_consumer
        self._kafka_python = consumer_factory is None  # see _check_topic_rights
        self.create_topics = create_topics
        # How long past ``until_idle`` to wait for an assignment (a dead member's
        # partitions move only once its session expires).
        self.no_assignment_grace_s = 2 * SESSION_TIMEOUT_S
        # No record for this long while records wait on owned partitions: reconnect.
        self.stall_s = 2 * SESSION_TIMEOUT_S
        self._connected_at = 0.0
        self.core = Batcher(
            self.topic,
            batch_size,
            flush_interval,
            decode=self.stream.decode,
            read=self.stream.read,
            refuse=functools.partial(contract.refusal, self.stream),
            columns=self.stream,
            clock=clock,
            max_inflight=max_inflight,
            group=self.group,
        )
        self._stop = threading.Event()
        self._drain = threading.Event()
        self._consumer: Any = None
        self.clock = clock  # of the loop, the core, the fence and the committer
        self._listener = RebalanceListener(clock)
        self._report: ConsumeReport | None = None
        self._assigned_at = 0.0
        self.fence = Fence(self._member_state, stale_after=SESSION_TIMEOUT_S / 2, clock=clock)
        self._unconfirmed_since: float | None = None
        self.committer = Committer(
            self.core,
            self.sinks,
            dead_letters if dead_letters is not None else DeadLetterWriter(settings, self.route),
            self.fence,
            lambda: self._consumer,
            commit_retry_s=commit_retry_s,
            clock=clock,
            on_batch=on_batch,
            before_commit=before_commit,
        )

    @property
    def on_batch(self) -> Callable[[BatchReport], None] | None:
        """Called with each committed batch's report (the committer calls it)."""
        return self.committer.on_batch

    @on_batch.setter
    def on_batch(self, callback: Callable[[BatchReport], None] | None) -> None:
        self.committer.on_batch = callback

    # --- control --------------------------------------------------------------------

    def stop(self) -> None:
        """Ask a running :meth:`run` to flush, commit and return (thread-safe)."""
        self._stop.set()

    def stop_when_caught_up(self) -> None:
        """Ask a running :meth:`run` to return once it has landed everything in its
        partitions (lag 0), thread-safe: how the news consumer ends with the ticks'."""
        self._drain.set()

    def _kafka_consumer(self, listener: ConsumerRebalanceListener) -> Any:
        consumer = kafka_consumer(
            self.settings,
            group=self.group,
            client_id=f"stock-pipeline-sink-{self.group}",
            max_poll_records=min(self.batch_size, 5000),
        )
        consumer.subscribe([self.topic], listener=listener)
        # Fetch the metadata after subscribing and before the first poll joins the
        # group. A leader without the topic's partitions assigns nothing ("No partition
        # metadata"). And kafka-python 3.0 notes the partition count it assigned by
        # only when metadata arrives for a subscribed topic. If that happens after the
        # first join, the change of count makes it join a second time, revoking
        # everything. A short poll can give up waiting on that second join, and the
        # next poll never collects it: the member stays "rebalancing", with every
        # partition unfetchable, until our stall check replaces the client (seen in
        # about one run in three on a freshly started broker: 30 s before the first
        # record).
        consumer.topics()
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
        for name, bound in (
            ("max_records", max_records),
            ("until_idle", until_idle),
            ("duration", duration),
        ):
            if bound is not None and not bound >= 0:
                raise ConsumerError(f"{name} must be a number >= 0, got {bound!r}")
        if self.create_topics:
            ensure_topic(self.settings, self.topic)
            ensure_topic(self.settings, self.route.dead_letter_topic, partitions=1)
        for sink in self.sinks:
            sink.setup()
        _freeze_startup_objects()
        self.core.counts = Counts()  # per run
        report = self._report = self.committer.report = ConsumeReport(
            topic=self.topic, group=self.group, counts=self.core.counts
        )
        self._listener.events = report.assignments
        restore = stop_on_sigterm([self]) if handle_signals else None
        bar = _progress_bar(max_records, self.topic) if progress else None
        started = self.clock()
        last_message = started
        first_message: float | None = None
        cpu_at_first = 0.0
        last_lag_check = 0.0
        self._consumer = self.consumer_factory(self._listener)
        self._connected_at = self.clock()
        self._rights_checked = False  # see _check_topic_rights
        try:
            while True:
                poll_started, poll_cpu = self.clock(), time.process_time()
                timeout = self.core.poll_timeout()
                polled = self._consumer.poll(timeout_ms=int(timeout * 1000))
                self._time("poll", poll_started)
                if not polled and self.clock() - poll_started < timeout / 2:
                    # kafka-python returns at once when nothing is assigned (more members
                    # than partitions): wait here instead of spinning a core.
                    self._stop.wait(timeout)
                if self._listener.take_change():
                    # Positions moved under us: records of this poll may not follow what
                    # we hold. Drop them and seek every owned partition explicitly.
                    polled = {}
                    self._apply_rebalance()
                decode_started = self.clock()
                received = self.core.add_poll({tp.partition: m for tp, m in polled.items()})
                now = self.clock()
                if polled:
                    self._time("decode", decode_started, now)
                if received:
                    last_message = now
                    if first_message is None:
                        first_message, cpu_at_first = poll_started, poll_cpu
                    if bar is not None:
                        bar.update(received)
                self.committer.complete(block=False)
                if self.core.due():
                    while not self.core.can_seal and self.committer.busy:
                        self.committer.complete()  # at most max_inflight batches in flight
                    if not self._seal():
                        self._stop.wait(0.05)  # do not spin on zero-timeout polls
                draining = self._drain.is_set() and self.core.idle and not self.committer.busy
                since_check = now - last_lag_check
                if since_check > 2 or (draining and report.lag != 0 and since_check > 0.5):
                    last_lag_check = now
                    report.lag = self.lag()
                    if self._consumer.assignment():
                        self._rights_checked = True  # the topic is readable
                    else:
                        self._check_topic_rights()
                    if bar is not None:
                        status = {
                            "batches": report.batches,
                            "dlq": report.dead_letters,
                            "lag": report.lag,
                        }
                        quiet = now - max(last_message, self._assigned_at)
                        if until_idle is not None and quiet >= 1:  # the idle wait, visible
                            status["idle"] = f"{quiet:.0f}/{until_idle:g}s"
                        bar.set_postfix(status)
                    stalled_since = max(last_message, self._assigned_at, self._connected_at)
                    if report.lag and now - stalled_since > self.stall_s and self.core.idle:
                        self._reconnect(report.lag, now - stalled_since)
                reason = self._stop_reason(max_records)
                if reason is None and until_idle is not None:
                    reason = self._idle_reason(
                        now, max(last_message, self._assigned_at), until_idle
                    )
                if reason is None and duration is not None and now - started >= duration:
                    reason = f"duration {duration:g}s reached"
                if reason is None and draining and report.lag == 0:
                    reason = "caught up after the other streams finished"
                if reason:
                    report.stopped_because = reason
                    break
        except KeyboardInterrupt:
            report.stopped_because = "interrupted"
        except BaseException as error:
            report.stopped_because = f"error: {type(error).__name__}"
            self.core.abandon()  # uncommitted: whoever reads the partition next re-reads it
            denied = access_denied(self.settings, error, "READ", self.topic, self.group)
            if denied is not None:
                raise denied from None
            raise
        finally:
            try:
                # After an error what is held stays uncommitted: a restart re-reads it.
                if not report.stopped_because.startswith("error"):
                    try:
                        self._flush()
                    except BaseException:
                        report.stopped_because = "error while flushing"
                        self.core.abandon()
                        raise
                report.lag = self.lag()
                if first_message is not None:
                    report.active_cpu_seconds = time.process_time() - cpu_at_first
            finally:
                self.core.abandon()  # whatever is still held was not committed
                last_commit = self.committer.last_commit_at
                if first_message is not None and last_commit:
                    report.active_seconds = max(0.0, last_commit - first_message)
                self._close(restore, bar)
                report.seconds = self.clock() - started
        return report

    def _time(self, stage: str, started: float, ended: float | None = None) -> None:
        if self._report is not None:
            self._report.add_time(stage, (ended if ended is not None else self.clock()) - started)

    def _reconnect(self, lag: int, stalled: float) -> None:
        """Records wait on owned partitions, yet none arrived for ``stall_s``: replace
        the Kafka consumer. A safety net: kafka-python 3.0.12 was seen to drop the
        answer to a second join and stay "rebalancing" with nothing fetchable (the
        cause :meth:`_kafka_consumer` now avoids). Nothing is held (checked by the
        caller), so the new member resumes from the committed offsets."""
        log.warning(
            "no record for %.0fs while %d wait on this consumer's partitions; "
            "reconnecting to Kafka",
            stalled,
            lag,
        )
        if self._report is not None:
            self._report.reconnects += 1
        try:
            self._consumer.close(autocommit=False)
        except Exception as error:  # a broken client may fail to close cleanly
            log.info("closing the stalled consumer failed: %s", error)
        events = self._listener.events
        self._listener = RebalanceListener(self.clock)
        self._listener.events = events
        self._consumer = self.consumer_factory(self._listener)
        self._connected_at = self.clock()

    def _stop_reason(self, max_records: int | None) -> str | None:
        if self._stop.is_set():
            return "stop requested"
        if max_records is not None and self.core.counts.read >= max_records:
            return f"{max_records:,} records reached"
        return None

    def _idle_reason(self, now: float, last_activity: float, until_idle: float) -> str | None:
        """Caught up on the assigned partitions and nothing new for ``until_idle`` s.

        Right after start or a rebalance there may be no assignment yet (the group
        waits for a dead member's session to expire): that is not idle, unless it
        lasts well past the session timeout (more members than partitions).
        """
        idle = now - last_activity
        if idle < until_idle or not self.core.idle or self.committer.busy:
            return None
        if self._consumer.assignment():
            return f"caught up and idle for {until_idle:g}s" if self.lag() == 0 else None
        if idle >= until_idle + self.no_assignment_grace_s:
            return f"no partitions assigned for {idle:.0f}s"
        return None

    def _check_topic_rights(self) -> None:
        """A topic this principal may not see gives kafka-python's consumer no error,
        only no assignment (an all-topics listing just leaves it out). Once per run,
        3 s after connecting without ever having had an assignment, ask the broker
        about the topic itself. Only a refusal leaves here: anything else (a broker
        away, a slow answer) is logged and the loop goes on as before."""
        if not self._kafka_python or self._rights_checked:
            return
        if self.clock() - self._connected_at < 3:
            return
        self._rights_checked = True
        from kafka.errors import TopicAuthorizationFailedError

        try:  # a broker away is not a refusal: the loop waits for it as before
            admin = kafka_admin(self.settings, timeout_s=2)
            try:
                described = admin.describe_topics([self.topic])
            finally:
                admin.close()
        except Exception as error:
            log.info("could not ask Kafka about topic %r: %s", self.topic, error)
            return
        if any(
            topic.get("error_code") == TopicAuthorizationFailedError.errno for topic in described
        ):
            error = TopicAuthorizationFailedError(self.topic)
            raise access_denied(self.settings, error, "READ", self.topic) or error

    def _owned(self) -> set[int]:
        return owned(self._consumer, self.topic)

    def _apply_rebalance(self) -> None:
        lost = self._listener.take_lost()
        owned = self._owned()
        targets = self.core.rebalance(owned, lost=lost)
        self._assigned_at = self.clock()
        log.info(
            "assignment of %s: partitions %s%s",
            self.topic,
            sorted(owned),
            " (membership was lost)" if lost else "",
        )
        seek(self._consumer, self.topic, targets)

    def _seal(self) -> bool:
        """Close the open batch and start writing it in the background; False while the
        group membership is unconfirmed (the batch stays open).

        Up to ``max_inflight`` batches are written at once while the main thread keeps
        polling and decoding; commits stay on the main thread, strictly in the order
        the batches were sealed, each after its writes (see :meth:`Committer.complete`).
        """
        # Writes of dropped batches finish first: a late write of this member must not
        # land after a newer one of the same objects (same generation, fewer records).
        self.committer.settle()
        generation = self.fence.confirmed_generation()
        if generation is None:
            # Unconfirmed (rejoining, or no answer from the coordinator lately: perhaps
            # frozen past the session timeout). Hold the batch; the next polls either
            # confirm the membership or report it lost, and the core then drops what it
            # held. Unconfirmed for a whole session timeout: drop it now (bounds memory).
            now = self.clock()
            if self._unconfirmed_since is None:
                self._unconfirmed_since = now
                log.info("group membership unconfirmed: holding the open batch")
            elif now - self._unconfirmed_since > SESSION_TIMEOUT_S:
                self._unconfirmed_since = None
                self.committer.drop(Fenced(f"membership unconfirmed for {SESSION_TIMEOUT_S:g}s"))
            return False
        self._unconfirmed_since = None
        sealed = self.core.seal(datetime.now(UTC), generation)
        if sealed is not None:
            self.committer.write(sealed)
        return True

    def _member_state(self) -> MemberState:
        consumer = self._consumer
        if consumer is None:  # closed: a write still running must not land
            return MemberState(NO_GENERATION, float("-inf"))
        state = member_state(consumer)
        # A join's answer confirms the membership as a heartbeat's does.
        joined = self._listener.assigned_at
        if joined > state.confirmed_at:
            return MemberState(state.generation, joined)
        return state

    def _flush(self) -> None:
        """Write and commit everything read so far (waits for the batches in flight)."""
        self.committer.flush()
        if not self.core.idle:
            deadline = time.monotonic() + self.fence.stale_after
            while not self._seal() and time.monotonic() < deadline:
                time.sleep(0.1)  # the heartbeat thread confirms a live membership
            self.committer.flush()

    def lag(self) -> int | None:
        """Messages not yet read on the assigned partitions; with no assignment, the
        group's lag on the whole topic (end offsets minus commits). None if unknown."""
        consumer = self._consumer
        if consumer is None:
            return None
        from kafka.structs import TopicPartition

        try:
            assigned = [tp for tp in consumer.assignment() if tp.topic == self.topic]
            if assigned:
                ends = consumer.end_offsets(assigned)
                return sum(max(0, ends[tp] - consumer.position(tp)) for tp in assigned)
            partitions = consumer.partitions_for_topic(self.topic) or set()
            tps = [TopicPartition(self.topic, p) for p in partitions]
            if not tps:
                return 0
            ends = consumer.end_offsets(tps)
            starts = consumer.beginning_offsets(tps)
            return sum(partition_lag(ends[tp], starts[tp], consumer.committed(tp)) for tp in tps)
        except Exception:  # lag is informative only
            return None

    def _close(self, restore: Callable[[], None] | None, bar: Any) -> None:
        try:
            if self._consumer is not None:
                self._consumer.close(autocommit=False)
        finally:
            self._consumer = None
            try:
                self.committer.close()
            finally:
                if bar is not None:
                    bar.close()
                if restore is not None:
                    restore()


def _progress_bar(total: int | None, topic: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"consume ← {topic}", unit="rec", mininterval=0.5)


_frozen = False


def _freeze_startup_objects() -> None:
    """Take what start-up created (the Google clients, pyarrow, pandas: hundreds of
    thousands of objects) out of the garbage collector's full collections, which the
    records of every poll would otherwise trigger again and again: about a tenth of
    the consumer's CPU per record (bench ``end_to_end``). Once per process."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.collect()
        gc.freeze()


def stop_on_sigterm(members: Iterable[SinkConsumer]) -> Callable[[], None] | None:
    """SIGTERM → every member flushes, commits and returns; the restore function, or
    None off the main thread (only it may install signal handlers)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    members = list(members)
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: Any) -> None:
        for member in members:
            member.stop()

    signal.signal(signal.SIGTERM, on_term)
    return lambda: signal.signal(signal.SIGTERM, previous)
