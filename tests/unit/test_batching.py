"""The consumer's broker-free core: contiguity, commit plans, positions, counting."""

from __future__ import annotations

from collections import namedtuple
from datetime import UTC, datetime

import pytest

from pipeline_lib.kafka_io.batching import Batcher
from pipeline_lib.records.schema import InvalidRecord

Record = namedtuple("Record", "topic partition offset key value")
NOW = datetime(2024, 1, 2, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def decode(value):
    if value == b"bad":
        raise InvalidRecord("bad value", "x")
    if value == b"boom":
        raise OverflowError("date value out of range")
    return value


def messages(partition: int, start: int, values: list) -> list:
    return [Record("t", partition, start + i, None, v) for i, v in enumerate(values)]


def make(**kwargs) -> Batcher:
    return Batcher("t", decode=decode, **kwargs)


def test_seal_commits_the_offset_after_the_last_message_and_counts_dead_letters():
    core = make()
    core.add(0, messages(0, 10, [b"a", b"bad", b"b", b"boom"]))
    core.add(1, messages(1, 0, [b"c"]))
    sealed = core.seal(NOW)
    assert sealed.offsets == {0: 14, 1: 1}
    assert sealed.messages == 5 and sealed.records == 3
    assert [(d.offset, d.stage) for d in sealed.dead_letters] == [(11, "decode"), (13, "decode")]
    assert "OverflowError" in sealed.dead_letters[1].reason
    core.committed_inflight(core.commit_plan({0, 1}))
    counts = core.counts
    assert (counts.read, counts.landed, counts.dead_letters, counts.discarded) == (5, 3, 2, 0)


def test_due_by_size_or_by_age_and_poll_timeout_never_delays_the_time_flush():
    clock = Clock()
    core = make(batch_size=3, flush_interval=2.0, clock=clock)
    assert not core.due() and core.poll_timeout() == 0.2
    core.add(0, messages(0, 0, [b"a"]))
    clock.now += 1.9
    assert not core.due()
    assert core.poll_timeout() == pytest.approx(0.1)
    clock.now += 0.1
    assert core.due() and core.poll_timeout() == 0.0
    core.seal(NOW)
    core.committed_inflight({0: 1})
    core.add(0, messages(0, 1, [b"a", b"b", b"c"]))
    assert core.due()  # full


def test_messages_already_held_are_skipped_and_gaps_are_spanned():
    core = make()
    core.add(0, messages(0, 0, [b"a", b"b"]))
    assert core.add(0, messages(0, 1, [b"b", b"c"])) == 1  # offset 1 again: skipped
    core.add(0, messages(0, 7, [b"d"]))  # a gap (e.g. compaction)
    assert core.counts.duplicates_skipped == 1 and core.counts.gaps == 1
    assert core.seal(NOW).offsets == {0: 8}


def test_rebalance_keeps_what_it_holds_for_retained_partitions_and_seeks_new_ones_to_commit():
    core = make()
    core.add(0, messages(0, 0, [b"a"] * 5))
    core.add(1, messages(1, 0, [b"a"] * 3))
    positions = core.rebalance({0, 2})
    assert positions == {0: 5, 2: None}  # 1 revoked: dropped; 2 new: committed offset
    assert core.counts.discarded == 3
    sealed = core.seal(NOW)
    assert sealed.offsets == {0: 5}


def test_rebalance_while_a_batch_is_in_flight_positions_after_it_and_commits_only_owned():
    core = make()
    core.add(0, messages(0, 0, [b"a"] * 4))
    core.add(1, messages(1, 0, [b"a"] * 2))
    core.seal(NOW)
    assert core.rebalance({0}) == {0: 4}  # the in-flight batch still covers 0..3
    assert core.commit_plan({0}) == {0: 4}
    core.committed_inflight({0: 4})
    assert core.counts.landed == 4 and core.counts.discarded == 2  # partition 1: re-read


def test_lost_membership_drops_everything_and_the_batch_in_flight_is_not_committed():
    core = make()
    core.add(0, messages(0, 0, [b"a"] * 4))
    sealed = core.seal(NOW)
    core.add(0, messages(0, 4, [b"a"] * 2))
    assert core.rebalance({0}, lost=True) == {0: None}
    assert not sealed.committable and core.inflight == []
    assert core.commit_plan({0}) == {}
    assert core.counts.discarded == 6 and core.idle


def test_refused_commit_rewinds_every_owned_partition_to_its_commit():
    core = make()
    core.add(0, messages(0, 0, [b"a"] * 4))
    core.seal(NOW)
    core.add(0, messages(0, 4, [b"a"] * 2))
    core.add(3, messages(3, 0, [b"a"]))
    assert core.rewind({0, 3}) == {0: None, 3: None}
    assert core.counts.refused_commits == 1 and core.counts.discarded == 7 and core.idle


def test_every_message_read_is_landed_dead_or_discarded():
    core = make()
    core.add(0, messages(0, 0, [b"a", b"bad", b"c"]))
    core.seal(NOW)
    core.add(0, messages(0, 3, [b"d", b"e"]))
    core.committed_inflight({0: 3})
    core.add(1, messages(1, 0, [b"x"]))
    core.rebalance({0})
    core.abandon()
    c = core.counts
    assert c.read == 6 and c.read == c.landed + c.dead_letters + c.discarded


def test_batches_in_flight_are_bounded_and_committed_oldest_first():
    core = make(max_inflight=2)
    core.add(0, messages(0, 0, [b"a"] * 3))
    first = core.seal(NOW)
    core.add(0, messages(0, 3, [b"a"] * 2))
    second = core.seal(NOW)
    core.add(0, messages(0, 5, [b"a"]))
    assert not core.can_seal
    with pytest.raises(RuntimeError, match="in flight"):
        core.seal(NOW)
    assert core.next_offset(0) == 6
    assert core.commit_plan({0}) == {0: 3}  # the oldest first, whatever finished first
    assert core.committed_inflight({0: 3}) is first
    assert core.commit_plan({0}) == {0: 5}
    assert core.committed_inflight({0: 5}) is second and core.can_seal


def test_a_rebalance_positions_after_the_newest_batch_in_flight():
    core = make(max_inflight=2)
    core.add(0, messages(0, 0, [b"a"] * 3))
    core.seal(NOW)
    core.add(0, messages(0, 3, [b"a"] * 2))
    core.add(1, messages(1, 0, [b"a"] * 2))
    core.seal(NOW)
    assert core.rebalance({0, 1}) == {0: 5, 1: 2}
    assert core.rewind({0, 1}) == {0: None, 1: None}
    assert core.counts.discarded == 7 and core.idle
