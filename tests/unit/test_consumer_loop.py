"""The consumer loop driven with fakes: every data-protecting path, no broker.

Each test builds a log, runs :class:`SinkConsumer` against a scripted fake consumer
and checks the one property that matters: every offset of the log is in the sinks
or the dead-letter topic, and the committed offsets never pass an offset that is in
neither.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import orjson
import pytest

from pipeline_lib.kafka_io.consumer import ConsumerError, SinkConsumer
from pipeline_lib.records.schema import encode
from pipeline_lib.sinks import SinkUnavailable
from pipeline_lib.sources.simulator import MarketSimulator, SimulatorConfig, symbol_specs
from tests.fakes import (
    FakeConsumer,
    FakeGroup,
    RecordingDeadLetters,
    RecordingSink,
    fake_settings,
)

START = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)


def log_of(partitions: int, per_partition: int, bad_every: int = 0) -> FakeGroup:
    ticks = iter(MarketSimulator(SimulatorConfig(seed=5, start=START, symbols=symbol_specs(None))))
    log: dict[int, list[bytes | None]] = {}
    for p in range(partitions):
        values: list[bytes | None] = []
        for i in range(per_partition):
            bad = bad_every and i % bad_every == bad_every - 1
            values.append(b"{oops" if bad else encode(next(ticks)))
        log[p] = values
    return FakeGroup(log)


def build(group, factory, sink, letters, **options) -> SinkConsumer:
    """A SinkConsumer over fakes (small batches, short flushes unless told)."""
    options.setdefault("batch_size", 50)
    options.setdefault("flush_interval", 0.01)
    return SinkConsumer(
        fake_settings(),
        sinks=[sink],
        consumer_factory=factory,
        dead_letters=letters,
        create_topics=False,
        **options,
    )


def run(group, owned=None, script=None, sink=None, letters=None, **kwargs):
    sink = sink or RecordingSink()
    letters = letters if letters is not None else RecordingDeadLetters()
    made = {}

    def factory(listener):
        consumer = FakeConsumer(group, listener, owned if owned is not None else set(group.log))
        consumer.script.update(script or {})
        made["consumer"] = consumer
        return consumer

    options = kwargs.pop("consumer_options", {})
    for name in ("batch_size", "flush_interval"):
        if name in kwargs:
            options[name] = kwargs.pop(name)
    consumer = build(group, factory, sink, letters, **options)
    consumer.no_assignment_grace_s = kwargs.pop("grace", 30.0)
    kwargs.setdefault("until_idle", 0.05)
    report = consumer.run(handle_signals=False, **kwargs)
    return report, sink, letters, made["consumer"]


def assert_nothing_skipped(group, sink, letters) -> None:
    """Every offset up to each commit is in the sink or the dead-letter topic."""
    accounted = set(sink.written) | {(d.partition, d.offset) for d in letters.sent}
    for partition, committed in group.committed.items():
        missing = [o for o in range(committed) if (partition, o) not in accounted]
        assert not missing, f"partition {partition}: committed past {missing[:5]}..."


def assert_all_landed(group, sink, letters) -> None:
    assert group.committed == {p: len(v) for p, v in group.log.items()}
    assert_nothing_skipped(group, sink, letters)


def test_a_clean_run_lands_everything_once_and_accounts_for_every_message():
    group = log_of(3, 200, bad_every=50)
    batches = []
    report, sink, letters, _ = run(group, consumer_options={"on_batch": batches.append})
    # Each batch line counts exactly the messages its commit moved past.
    assert sum(b.records for b in batches) == sum(group.committed.values()) == 600
    assert sum(b.dead_letters for b in batches) == 12
    assert_all_landed(group, sink, letters)
    assert len(sink.written) == len(set(sink.written)) == 3 * 196
    assert len(letters.sent) == 12 and report.dead_letters == 12
    assert report.consumed == report.written + report.dead_letters + report.discarded == 600


def test_a_rebalance_that_keeps_fetch_positions_never_skips_records():
    """The bug of issue 9: kafka-python keeps positions of retained partitions while the
    old loop dropped their buffers, so the next commit jumped past them."""
    group = log_of(3, 400)
    script = {
        4: lambda c: c.rebalance({0, 1}),  # a second member joins: we keep 0 and 1
        9: lambda c: c.rebalance({0, 1, 2}),  # it leaves again
    }
    report, sink, letters, consumer = run(group, script=script, batch_size=1000, flush_interval=0.5)
    assert report.rebalances >= 2
    assert_all_landed(group, sink, letters)
    assert consumer.seeks, "positions are set explicitly after a rebalance"
    assert report.assignments == [  # what the notebook shows a student, in order
        ("assigned", [0, 1, 2]),
        ("revoked", [0, 1, 2]),
        ("assigned", [0, 1]),
        ("revoked", [0, 1]),
        ("assigned", [0, 1, 2]),
    ]


def test_revoked_then_reassigned_mid_batch_reads_from_the_commit_again():
    group = log_of(2, 300)
    script = {3: lambda c: c.rebalance({1}), 6: lambda c: c.rebalance({0, 1})}
    report, sink, letters, _ = run(group, script=script, batch_size=10_000, flush_interval=0.5)
    assert report.discarded > 0  # partition 0's open batch was dropped...
    assert_all_landed(group, sink, letters)  # ...and read again, not skipped


def test_lost_membership_while_a_batch_is_written_does_not_commit_it():
    group = log_of(2, 200)
    script = {5: lambda c: c.rebalance({0, 1}, keep_positions=True, lost=True)}
    report, sink, letters, _ = run(group, script=script)
    assert_all_landed(group, sink, letters)
    assert report.consumed == report.written + report.dead_letters + report.discarded


def test_a_refused_commit_rewinds_and_everything_still_lands():
    group = log_of(3, 150)

    def refuse(c):
        c.refuse_commits = 2

    report, sink, letters, _ = run(group, script={3: refuse})
    assert report.refused_commits == 2
    assert_all_landed(group, sink, letters)
    assert len(sink.written) > len(set(sink.written)), "re-read batches are written twice"


def test_a_sink_that_stays_down_stops_the_consumer_without_committing_its_batch():
    group = log_of(1, 100)
    sink = RecordingSink(fail_times=1)
    with pytest.raises(SinkUnavailable):
        run(group, sink=sink)
    assert group.committed == {}
    _, sink, letters, _ = run(group)  # the restart
    assert_all_landed(group, sink, letters)


def test_records_a_sink_refuses_are_dead_lettered_and_committed_past():
    group = log_of(1, 100)
    sink = RecordingSink(refuse=lambda tick: tick.symbol == "AAPL")
    report, sink, letters, _ = run(group, sink=sink)
    assert_all_landed(group, sink, letters)
    assert report.dead_letters == len(letters.sent) > 0
    assert {d.stage for d in letters.sent} == {"recording"}


def test_poison_pills_become_dead_letters_and_the_loop_goes_on():
    tick = orjson.loads(encode(next(iter(MarketSimulator(SimulatorConfig(seed=1, start=START))))))
    poison = [
        json.dumps({**tick, "ts": "9999-12-31T23:59:59-01:00"}).encode(),
        json.dumps({**tick, "produced_at": "0001-01-01T00:00:00+01:00"}).encode(),
        json.dumps({**tick, "volume": 2**70}).encode(),
        json.dumps({**tick, "close": 1e308}).encode(),
        json.dumps({**tick, "open": 10**400}).encode(),
        b"[" * 5000 + b"]" * 5000,
        b"\xff\xfe\x00",
        None,
        b"{" + b'"a":1,' * 10 + b'"a":2}',
    ]
    group = log_of(1, 60)
    group.log[0][10:10] = poison
    report, sink, letters, _ = run(group)
    assert_all_landed(group, sink, letters)
    assert {d.offset for d in letters.sent} == set(range(10, 10 + len(poison)))
    assert report.written == 60


def test_stop_flushes_and_commits_what_was_read():
    group = log_of(2, 500)
    holder = {}

    def stop_soon(c):
        holder["consumer"].stop()

    sink = RecordingSink()
    letters = RecordingDeadLetters()

    def factory(listener):
        consumer = FakeConsumer(group, listener, {0, 1})
        consumer.script[3] = stop_soon
        return consumer

    consumer = build(group, factory, sink, letters, batch_size=10_000, flush_interval=60)
    holder["consumer"] = consumer
    report = consumer.run(handle_signals=False)
    assert report.stopped_because == "stop requested"
    assert 0 < report.written < 1000 and report.discarded == 0
    assert sum(group.committed.values()) == report.written
    assert_nothing_skipped(group, sink, letters)


def test_commit_failures_that_do_not_pass_stop_with_a_clear_error():
    from kafka.errors import KafkaTimeoutError

    group = log_of(1, 50)

    def broken(c):
        def fail(offsets):
            raise KafkaTimeoutError("coordinator unavailable")

        c.commit = fail

    with pytest.raises(ConsumerError, match="restart re-reads it"):
        run(group, script={1: broken}, consumer_options={"commit_retry_s": 0.3})
    assert group.committed == {}


@pytest.mark.parametrize("bound", [{"max_records": -5}, {"duration": -1}, {"until_idle": -2}])
def test_negative_bounds_are_refused(bound):
    with pytest.raises(ConsumerError, match="must be a number >= 0"):
        run(log_of(1, 1), **bound)


def test_no_assignment_reports_the_group_lag_not_zero():
    """Other members (or a stuck rebalance) hold every partition: say how much waits."""
    group = log_of(2, 100)
    group.committed = {0: 40}
    report, sink, _, _ = run(group, owned=set(), grace=0.2)
    assert report.stopped_because.startswith("no partitions assigned")
    assert report.lag == 60 + 100 and sink.written == []


def test_a_slow_batch_is_still_committed_before_the_faster_one_after_it():
    import threading
    import time as clock

    class SlowFirst(RecordingSink):
        def __init__(self) -> None:
            super().__init__()
            self.calls = 0
            self.lock = threading.Lock()

        def write(self, batch):
            with self.lock:
                self.calls += 1
                first = self.calls == 1
            if first:
                clock.sleep(0.4)  # the next batch is written meanwhile
            return super().write(batch)

    group = log_of(1, 300)
    report, sink, letters, _ = run(
        group, sink=SlowFirst(), batch_size=100, consumer_options={"max_inflight": 2}
    )
    commits = [c[0] for c in group.commits]
    assert commits == sorted(commits) and commits[-1] == 300
    assert_all_landed(group, sink, letters)
    assert report.batches >= 3


def test_a_consumer_stalled_with_records_waiting_is_replaced():
    """kafka-python 3 was seen spinning in poll() forever after a join, fetching
    nothing while records waited: the loop replaces such a client."""
    group = log_of(2, 100)
    made = []

    class Stalled(FakeConsumer):
        def poll(self, timeout_ms=0):
            super().poll(0)  # joins, then never hands out records
            self.positions = {p: self.group.committed.get(p, 0) for p in self.owned}
            return {}

    def factory(listener):
        kind = Stalled if not made else FakeConsumer
        made.append(kind(group, listener, {0, 1}))
        return made[-1]

    sink, letters = RecordingSink(), RecordingDeadLetters()
    consumer = build(group, factory, sink, letters)
    consumer.stall_s = 0.5
    report = consumer.run(until_idle=3, handle_signals=False)
    assert report.reconnects == 1 and len(made) == 2 and made[0].closed
    assert_all_landed(group, sink, letters)


def test_the_kafka_consumer_learns_its_topic_after_subscribing_before_joining(monkeypatch):
    """kafka-python 3.0 compares the partition count it assigned by with the one it
    learns from metadata fetched *while subscribed*. Fetched only before subscribe(),
    the first join used a stale count, a second join followed, and a short poll could
    lose it: 30 s with every partition unfetchable. So: subscribe, then fetch."""
    import pipeline_lib.kafka_io.consumer as consumer_module

    calls: list[str] = []

    class Client:
        def subscribe(self, topics, listener=None):
            calls.append(f"subscribe {topics}")

        def topics(self):
            calls.append("topics")
            return set()

        def partitions_for_topic(self, topic):
            calls.append("partitions_for_topic")
            return set()

        def poll(self, timeout_ms=0):
            calls.append("poll")
            return {}

    monkeypatch.setattr(consumer_module, "kafka_consumer", lambda *a, **k: Client())
    consumer = SinkConsumer(
        fake_settings(),
        sinks=[RecordingSink()],
        dead_letters=RecordingDeadLetters(),
        create_topics=False,
    )
    consumer._kafka_consumer(listener=None)
    assert calls == [f"subscribe {[consumer.topic]}", "topics"]


def test_a_refused_row_becomes_a_dead_letter_with_its_original_key_and_value():
    """The docs (docs/delivery.md, "Dead letters") promise the original key, value and
    headers on the dead-letter topic, for rows a sink refuses as for messages that fail
    to decode."""
    group = log_of(1, 100, bad_every=7)
    sink = RecordingSink(refuse=lambda tick: tick.symbol == "AAPL")
    _, sink, letters, _ = run(group, sink=sink)
    refused = [d for d in letters.sent if d.stage == "recording"]
    assert refused and {d.key for d in refused} == {b"K"}
    assert all(d.value == group.log[0][d.offset] for d in refused)
    for letter in letters.sent:  # refused by the sink or by the decoder: headers kept
        assert letter.headers == (("trace", f"0/{letter.offset}".encode()),)


@pytest.mark.parametrize(
    ("end", "start", "committed", "lag"),
    [
        (100, 0, None, 100),  # nothing committed: all of it
        (100, 0, 0, 100),  # committed at 0 is a commit, not "none"
        (100, 40, 0, 60),  # retention deleted what the commit points at
        (100, 40, 70, 30),
        (100, 0, 100, 0),
    ],
)
def test_one_lag_formula(end, start, committed, lag):
    from pipeline_lib.kafka_io.reports import partition_lag

    assert partition_lag(end, start, committed) == lag
