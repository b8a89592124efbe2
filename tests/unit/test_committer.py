"""The committer on fakes and a fake clock: write, dead letters, commit, in order."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from kafka.errors import KafkaConnectionError

from pipeline_lib.kafka_io.batching import Batcher
from pipeline_lib.kafka_io.committer import Committer, ConsumerError
from pipeline_lib.kafka_io.membership import Fence, MemberState
from pipeline_lib.kafka_io.reports import ConsumeReport
from pipeline_lib.records.schema import decode
from pipeline_lib.records.streams import TICKS as STREAM
from pipeline_lib.sinks import SinkUnavailable
from tests.fakes import TOPIC, FakeConsumer, Record, RecordingDeadLetters, RecordingSink
from tests.unit.test_consumer_loop import log_of

NOW = datetime(2024, 1, 2, 15, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class Journal(RecordingDeadLetters):
    """Dead letters that note, in one journal with the commits, when they were flushed."""

    def __init__(self, journal: list[str]) -> None:
        super().__init__()
        self.journal = journal

    def flush(self) -> int:
        flushed = super().flush()
        self.journal.append(f"dead letters: {flushed}")
        return flushed


class JournalConsumer(FakeConsumer):
    def __init__(self, group, journal: list[str], **kwargs) -> None:
        super().__init__(group, listener=None, owned={0, 1}, **kwargs)
        self.journal = journal
        self.failures: list[Exception] = []

    def commit(self, offsets: dict) -> None:
        if self.failures:
            raise self.failures.pop(0)
        super().commit(offsets)
        self.journal.append(f"commit: {sorted(self.group.commits[-1].items())}")


def setup(bad_every: int = 0, sink=None, generation=1, on_batch=None):
    """A committer over fakes, with one batch of 2 x 30 messages sealed."""
    group = log_of(2, 30, bad_every=bad_every)
    journal: list[str] = []
    clock = FakeClock()
    consumer = JournalConsumer(group, journal)
    core = Batcher(TOPIC, batch_size=1000, decode=decode, clock=clock, group="g")
    for p in (0, 1):
        core.add(p, [Record(TOPIC, p, o, b"K", v) for o, v in enumerate(group.log[p])])
    fence = Fence(lambda: MemberState(generation, clock()), stale_after=7.5, clock=clock)
    letters = Journal(journal)
    committer = Committer(
        core,
        [sink or RecordingSink()],
        letters,
        fence,
        lambda: consumer,
        clock=clock,
        sleep=clock.sleep,
        on_batch=on_batch,
    )
    committer.report = ConsumeReport(TOPIC, "g", counts=core.counts)
    sealed = core.seal(NOW, 1)
    return committer, sealed, consumer, letters, journal, clock


def test_dead_letters_are_flushed_before_the_offsets_are_committed():
    reports = []
    committer, sealed, _consumer, letters, journal, _ = setup(bad_every=10, on_batch=reports.append)
    committer.write(sealed)
    committer.complete()
    assert journal == ["dead letters: 6", "commit: [(0, 30), (1, 30)]"]
    assert not committer.busy and committer.core.idle
    assert reports[0].records == 60 and reports[0].dead_letters == 6
    assert {d.key for d in letters.sent} == {b"K"}


def test_a_refused_commit_rewinds_to_the_committed_offsets():
    from kafka.errors import CommitFailedError

    committer, sealed, consumer, _, _journal, _ = setup()
    consumer.failures = [CommitFailedError("rebalanced")]
    committer.write(sealed)
    committer.complete()
    assert consumer.group.committed == {} and committer.core.counts.refused_commits == 1
    assert sorted(consumer.seeks) == [(0, 0), (1, 0)]  # back to the beginning: nothing committed


def test_transient_commit_errors_are_retried_with_backoff_on_the_clock():
    committer, sealed, consumer, _, _journal, clock = setup()
    consumer.failures = [KafkaConnectionError("down")] * 3
    committer.write(sealed)
    committer.complete()
    assert clock.slept == [0.2, 0.4, 0.8]
    assert consumer.group.committed == {0: 30, 1: 30}


def test_commits_failing_past_the_deadline_stop_with_a_clear_error():
    committer, sealed, consumer, _, _journal, clock = setup()
    consumer.failures = [KafkaConnectionError("down")] * 100
    committer.write(sealed)
    with pytest.raises(ConsumerError, match=r"could not commit offsets .* for 30s"):
        committer.complete()
    assert consumer.group.committed == {} and sum(clock.slept) <= 30


def test_a_sink_that_stays_down_commits_nothing():
    committer, sealed, consumer, _letters, journal, _ = setup(sink=RecordingSink(fail_times=1))
    committer.write(sealed)
    with pytest.raises(SinkUnavailable):
        committer.complete()
    assert journal == [] and consumer.group.committed == {}


def test_a_batch_of_an_ended_generation_sends_no_dead_letters_and_commits_nothing():
    committer, sealed, _consumer, letters, journal, _ = setup(bad_every=10, generation=2)
    sink = committer.sinks[0]
    committer.write(sealed)
    committer.complete()
    assert journal == [] and letters.sent == [] and sink.written == []
    assert committer.core.counts.fenced == 1 and committer.core.idle


def test_stage_times_come_from_the_clock_given():
    committer, sealed, consumer, _, _journal, _clock = setup()
    consumer.failures = [KafkaConnectionError("down")]
    committer.write(sealed)
    committer.complete()
    assert committer.report.stage_seconds["commit"] == pytest.approx(0.2)


def test_a_batch_sealed_but_not_yet_handed_over_is_written_before_its_commit():
    """Ctrl-C between the seal and the hand-over: the flush writes it, never commits it
    unwritten."""
    committer, sealed, consumer, _, _journal, _ = setup()
    sink = committer.sinks[0]
    assert sealed.writes is None
    committer.flush()
    assert len(sink.written) == 60 and consumer.group.committed == {0: 30, 1: 30}


def test_a_gcs_write_ends_only_when_every_upload_has_ended():
    """Else an upload of a dropped batch could land after the batch is written again."""
    import threading
    import time

    from pipeline_lib.records.batches import Batch
    from pipeline_lib.sinks import SinkError
    from pipeline_lib.sinks.gcs import GcsSink
    from tests.fakes import fake_settings
    from tests.helpers import simulated

    ended: list[str] = []
    lock = threading.Lock()

    class Uploads(GcsSink):
        def _upload(self, part, group, generation):
            if part.partition == 0:
                raise SinkError("refused")
            time.sleep(0.3)
            with lock:
                ended.append("slow upload")
            return "gs://b/x"

    parts = []
    for p, tick in enumerate(simulated(2, seed=3)):
        part = STREAM.partition_batch("t", p, [tick])
        parts.append(part)
    sink = Uploads(fake_settings())
    with pytest.raises(SinkError):
        sink.write(Batch(parts, NOW))
    assert ended == ["slow upload"]
    sink.close()
