"""The zombie fence: the membership check, the GCS replace rule, and the consumer
loop of a member frozen past its session timeout, on fakes."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from pipeline_lib.kafka_io.consumer import SinkConsumer
from pipeline_lib.kafka_io.membership import NO_GENERATION, Fence, Fenced, MemberState, member_state
from pipeline_lib.sinks.gcs import ObjectStamp, may_replace
from tests.fakes import FakeConsumer, RecordingDeadLetters, RecordingSink, fake_settings
from tests.unit.test_consumer_loop import assert_all_landed, log_of, run


class Clock:
    """The member's view, on a fake clock: generation 3, answered 1 s ago."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept = 0.0
        self.state = MemberState(3, confirmed_at=99.0)

    def answered(self, ago: float, generation: int = 3) -> None:
        self.state = MemberState(generation, self.now - ago)


def fence_of(clock: Clock) -> Fence:
    return Fence(
        lambda: clock.state, stale_after=7.5, suspended=lambda: clock.slept, clock=lambda: clock.now
    )


def test_a_confirmed_membership_seals_and_passes_in_its_generation():
    clock = Clock()
    fence = fence_of(clock)
    assert fence.confirmed_generation() == 3
    fence.check(3, "writing")


@pytest.mark.parametrize(
    ("ago", "generation"),
    [
        (9.0, 3),  # frozen: no answer for 9 s
        (0.0, NO_GENERATION),  # dropped by the group (rejoining)
    ],
)
def test_an_unconfirmed_membership_seals_nothing(ago, generation):
    clock = Clock()
    clock.answered(ago, generation)
    assert fence_of(clock).confirmed_generation() is None


def test_a_batch_of_an_older_generation_or_a_stale_membership_is_fenced():
    clock = Clock()
    fence = fence_of(clock)
    with pytest.raises(Fenced, match="read in group generation 2, the member is now in 3"):
        fence.check(2, "committing")
    clock.now += 20.0  # frozen for 20 s: the last answer is 21 s old
    with pytest.raises(Fenced, match=r"no answer from the group coordinator for 21\.0s"):
        fence.check(3, "writing")


def test_machine_sleep_counts_although_the_monotonic_clock_missed_it():
    """A closed lid suspends the machine: CLOCK_MONOTONIC stops, CLOCK_BOOTTIME not."""
    clock = Clock()
    fence = fence_of(clock)
    assert fence.confirmed_generation() == 3
    clock.slept = 60.0  # the monotonic clock did not move
    assert fence.confirmed_generation() is None
    clock.answered(0.2)  # the coordinator answered since
    assert fence.confirmed_generation() == 3


def test_an_older_view_read_late_does_not_erase_counted_sleep():
    """Threads look concurrently: a stale snapshot must not move the confirmation back
    and then make the next look count as a fresh answer."""
    clock = Clock()
    fence = fence_of(clock)
    fence.confirmed_generation()
    clock.slept = 60.0
    clock.answered(5.0)  # older than the answer already seen
    assert fence.confirmed_generation() is None
    clock.answered(1.0)  # still before the sleep
    assert fence.confirmed_generation() is None


def test_kafka_python_still_exposes_what_member_state_reads():
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(group_id="g", bootstrap_servers="127.0.0.1:1", api_version=(3, 0))
    try:
        state = member_state(consumer)
        consumer._coordinator.heartbeat.received_heartbeat()
        answered = member_state(consumer)
    finally:
        consumer.close()
    assert state == MemberState(NO_GENERATION, float("-inf"))
    assert answered.confirmed_at > state.confirmed_at


ZOMBIE = ObjectStamp("g", 4, 49)


@pytest.mark.parametrize(
    ("ours", "existing", "replace"),
    [
        (ObjectStamp("g", 4, 49), None, True),  # no stamp: written by an older version
        (ObjectStamp("g", 4, 49), ObjectStamp("g", 5, 99), False),  # late, shorter: kept
        (ObjectStamp("g", 4, 149), ObjectStamp("g", 5, 99), True),  # late, longer: grows
        (ObjectStamp("g", 6, 29), ObjectStamp("g", 5, 99), True),  # the new owner writes on
        (ObjectStamp("g", 5, 29), ObjectStamp("g", 5, 99), True),  # the same owner
        (ObjectStamp("g", 5, 99), ObjectStamp("g", 5, 99), False),  # the same records
        (ObjectStamp("h", 9, 29), ObjectStamp("g", 5, 99), False),  # another group
    ],
)
def test_the_gcs_replace_rule_never_lets_a_late_writer_shrink_an_object(ours, existing, replace):
    assert may_replace(ours, existing) is replace


def test_object_stamps_survive_metadata_and_garbage_reads_as_none():
    assert ObjectStamp.read(ZOMBIE.metadata()) == ZOMBIE
    assert ObjectStamp.read({"kafka-group": "g", "kafka-generation": "x"}) is None
    assert ObjectStamp.read(None) is None


class SealTimes(RecordingSink):
    """Notes when each batch it writes was sealed."""

    def __init__(self) -> None:
        super().__init__()
        self.sealed: list[datetime] = []

    def write(self, batch):
        self.sealed.append(batch.closed_at)
        return super().write(batch)


class LidClock:
    """The monotonic clock, plus the time a closed lid lasted."""

    def __init__(self) -> None:
        self.closed_for = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.closed_for


def test_a_member_frozen_past_its_session_timeout_seals_nothing_while_unconfirmed():
    group = log_of(2, 300)
    sink = SealTimes()
    clock = LidClock()
    frozen: dict[str, datetime] = {}

    def joined(c):
        c.clock = clock

    def freeze(c):
        frozen["from"] = datetime.now(UTC)
        clock.closed_for = 60.0  # a minute passes; the coordinator answered before it
        c.heartbeat_age = 60.0

    def dropped(c):
        frozen["to"] = datetime.now(UTC)
        c.heartbeat_age = 0.0  # the client learned the group moved on, and rejoined
        c.rebalance({0, 1}, lost=True)

    script = {1: joined, 3: freeze, 9: dropped}
    options = {"batch_size": 40, "clock": clock}
    report, sink, letters, _ = run(group, script=script, sink=sink, consumer_options=options)
    assert sink.sealed and not [t for t in sink.sealed if frozen["from"] < t < frozen["to"]]
    assert report.discarded > 0
    assert_all_landed(group, sink, letters)
    assert report.consumed == report.written + report.dead_letters + report.discarded


class RebalancingSink(RecordingSink):
    """The group moves to the next generation while the first batch is written."""

    consumer = None

    def write(self, batch):
        result = super().write(batch)
        if self.consumer is not None and batch.generation == 1:
            self.consumer.generation += 1
        return result


def test_a_batch_whose_generation_ended_while_it_was_written_is_not_committed():
    group = log_of(2, 200)
    sink = RebalancingSink()
    script = {1: lambda c: setattr(sink, "consumer", c)}
    report, sink, letters, _ = run(group, script=script, sink=sink)
    assert report.fenced == 1 and group.commits[0] != {}
    assert all(c for c in group.commits)
    assert_all_landed(group, sink, letters)
    assert len(sink.written) > len(set(sink.written)), "the fenced batch is read again"


class FencedOnce(RecordingSink):
    """Its first write finds the membership moved on."""

    name = "fenced-once"

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def write(self, batch):
        self.calls += 1
        if self.calls == 1:
            raise Fenced("not writing: the group moved on")
        return super().write(batch)


class SlowFirst(RecordingSink):
    """Its first write takes a while; notes when each write starts and ends."""

    name = "slow-first"

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, int]] = []
        self.calls = 0

    def write(self, batch):
        self.calls += 1
        number = self.calls
        self.events.append(("start", number))
        if number == 1:
            time.sleep(0.3)
        result = super().write(batch)
        self.events.append(("end", number))
        return result


def test_a_dropped_batch_finishes_writing_before_its_records_are_written_again():
    """Else its late write could replace the objects of the re-read batch, which
    holds more records, in the same generation: a shrink the GCS rule would allow."""
    group = log_of(2, 200)
    fenced, slow = FencedOnce(), SlowFirst()
    member = SinkConsumer(
        fake_settings(),
        sinks=[fenced, slow],
        consumer_factory=lambda listener: FakeConsumer(group, listener, {0, 1}),
        dead_letters=RecordingDeadLetters(),
        create_topics=False,
        batch_size=50,
        flush_interval=0.01,
    )
    report = member.run(until_idle=0.05, handle_signals=False)
    assert report.fenced == 1
    assert slow.events.index(("end", 1)) < slow.events.index(("start", 2))
    assert group.committed == {0: 200, 1: 200}


def test_a_membership_unconfirmed_for_a_session_timeout_drops_what_it_held(caplog):
    """The coordinator stays silent (and the group never says the member is gone):
    the member stops holding an ever larger batch after one session timeout."""
    group = log_of(2, 300)
    clock = LidClock()

    def joined(c):
        c.clock = clock

    def silent(c):
        clock.closed_for += 10.0
        c.heartbeat_age += 10.0

    def answered(c):
        c.heartbeat_age = 0.0

    script = {1: joined, 3: silent, 5: silent, 7: silent, 12: answered}
    options = {"batch_size": 40, "clock": clock}
    with caplog.at_level("WARNING", logger="pipeline_lib.kafka_io.consumer"):
        report, sink, letters, _ = run(group, script=script, consumer_options=options)
    assert "membership unconfirmed for 15s; dropping what is held" in caplog.text
    assert report.fenced >= 1 and report.discarded > 0
    assert_all_landed(group, sink, letters)
