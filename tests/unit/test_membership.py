"""The zombie fence: the membership check, the GCS replace rule, and the consumer
loop of a member frozen past its session timeout, on fakes."""

from __future__ import annotations

import pytest

from pipeline_lib.membership import NO_GENERATION, Fence, Fenced, MemberState, member_state
from pipeline_lib.sinks.gcs import ObjectStamp, may_replace
from tests.fakes import RecordingSink
from tests.unit.test_consumer_loop import assert_all_landed, log_of, run


class Clock:
    def __init__(self) -> None:
        self.state = MemberState(3, stable=True, heartbeat_age=1.0)
        self.slept = 0.0


def fence_of(clock: Clock) -> Fence:
    return Fence(lambda: clock.state, stale_after=7.5, suspended=lambda: clock.slept)


def test_a_confirmed_membership_seals_and_passes_in_its_generation():
    clock = Clock()
    fence = fence_of(clock)
    assert fence.confirmed_generation() == 3
    fence.check(3, "writing")


@pytest.mark.parametrize(
    "state",
    [
        MemberState(3, stable=True, heartbeat_age=9.0),  # frozen: no answer for 9 s
        MemberState(3, stable=False, heartbeat_age=1.0),  # rejoining
        MemberState(NO_GENERATION, stable=False, heartbeat_age=0.0),  # dropped by the group
    ],
)
def test_an_unconfirmed_membership_seals_nothing(state):
    clock = Clock()
    clock.state = state
    assert fence_of(clock).confirmed_generation() is None


def test_a_batch_of_an_older_generation_or_a_stale_membership_is_fenced():
    clock = Clock()
    fence = fence_of(clock)
    with pytest.raises(Fenced, match="read in group generation 2, the member is now in 3"):
        fence.check(2, "committing")
    clock.state = MemberState(3, stable=True, heartbeat_age=20.0)
    with pytest.raises(Fenced, match=r"no heartbeat answered for 20\.0s"):
        fence.check(3, "writing")


def test_machine_sleep_counts_although_the_monotonic_clock_missed_it():
    """A closed lid suspends the machine: CLOCK_MONOTONIC stops, CLOCK_BOOTTIME not."""
    clock = Clock()
    fence = fence_of(clock)
    assert fence.confirmed_generation() == 3
    clock.slept = 60.0  # the heartbeat age (monotonic) did not move
    assert fence.confirmed_generation() is None
    clock.state = MemberState(3, stable=True, heartbeat_age=0.2)  # answered since
    assert fence.confirmed_generation() == 3


def test_kafka_python_still_exposes_what_member_state_reads():
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(group_id="g", bootstrap_servers="127.0.0.1:1", api_version=(3, 0))
    try:
        state = member_state(consumer)
    finally:
        consumer.close()
    assert state.generation == NO_GENERATION and not state.stable
    assert state.heartbeat_age >= 0


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


class WatchfulSink(RecordingSink):
    """Fails the test if it is asked to write while its member looks frozen."""

    consumer = None

    def write(self, batch):
        assert self.consumer is None or self.consumer.heartbeat_age == 0, "zombie write"
        return super().write(batch)


def test_a_member_frozen_past_its_session_timeout_writes_nothing_it_held():
    group = log_of(2, 300)
    sink = WatchfulSink()

    def freeze(c):
        sink.consumer = c
        c.heartbeat_age = 60.0  # woke up: no heartbeat answered for a minute

    def dropped(c):
        c.heartbeat_age = 0.0  # the client learned the group moved on, and rejoined
        c.rebalance({0, 1}, lost=True)

    script = {3: freeze, 9: dropped}
    report, sink, letters, _ = run(group, script=script, sink=sink, batch_size=40)
    assert report.discarded > 0  # what it held when frozen was dropped, unwritten
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
