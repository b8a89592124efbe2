"""In-memory stand-ins for a Kafka consumer, sinks and the dead-letter writer.

They let the consumer loop's data-protecting paths (rebalances, refused commits,
sink failures, poison pills, stops) run in unit tests without a broker. The fake
consumer follows kafka-python 3's observable behaviour where it matters: eager
rebalances revoke every partition, then assign the new set, and partitions kept
across the rebalance keep their fetch position unless the caller seeks.
"""

from __future__ import annotations

import time
from collections import namedtuple
from collections.abc import Callable
from dataclasses import dataclass, field

from kafka.errors import CommitFailedError
from kafka.structs import TopicPartition

from pipeline_lib.core.config import Settings
from pipeline_lib.kafka_io.membership import MemberState
from pipeline_lib.records.batches import Batch, WriteResult
from pipeline_lib.sinks import Sink, SinkUnavailable

Record = namedtuple("Record", "topic partition offset key value headers", defaults=(None,))
TOPIC = "ticks"


@dataclass
class FakeGroup:
    """The broker side: the log of each partition and the group's committed offsets."""

    log: dict[int, list[bytes | None]]
    committed: dict[int, int] = field(default_factory=dict)
    commits: list[dict[int, int]] = field(default_factory=list)


class FakeConsumer:
    """A consumer of ``TOPIC`` owning some partitions of ``group``'s log."""

    def __init__(self, group: FakeGroup, listener, owned: set[int], max_poll: int = 40) -> None:
        self.group = group
        self.listener = listener
        self.owned = set(owned)
        self.max_poll = max_poll
        self.positions: dict[int, int] = {}
        self.polls = 0
        self.script: dict[int, Callable[[FakeConsumer], None]] = {}
        self.refuse_commits = 0
        self.closed = False
        self.seeks: list[tuple[int, int]] = []
        self._pending_assign = True  # the first poll joins the group
        self.generation = 0  # the group generation: +1 at every assignment
        self.heartbeat_age = 0.0  # a test sets it high to play a member frozen too long
        self.clock = time.monotonic  # the consumer's clock, when a test gives it one

    # --- what the test scripts ------------------------------------------------------

    def rebalance(self, owned: set[int], keep_positions: bool = True, lost: bool = False) -> None:
        """An eager rebalance during the next poll: revoke (or lose) all, assign ``owned``."""
        before = {TopicPartition(TOPIC, p) for p in self.owned}
        if lost:
            self.listener.on_partitions_lost(before)
        else:
            self.listener.on_partitions_revoked(before)
        for p in list(self.positions):
            if p not in owned or not keep_positions:
                del self.positions[p]
        self.owned = set(owned)
        self.generation += 1
        self.listener.on_partitions_assigned({TopicPartition(TOPIC, p) for p in owned})

    # --- the KafkaConsumer surface the loop uses ------------------------------------

    def poll(self, timeout_ms: int = 0) -> dict:
        self.polls += 1
        if self._pending_assign:
            self._pending_assign = False
            self.generation += 1
            self.listener.on_partitions_assigned({TopicPartition(TOPIC, p) for p in self.owned})
        if self.polls in self.script:
            self.script[self.polls](self)
        out = {}
        for p in sorted(self.owned):
            position = self.positions.setdefault(p, self.group.committed.get(p, 0))
            values = self.group.log[p][position : position + self.max_poll]
            if values:
                out[TopicPartition(TOPIC, p)] = [
                    Record(
                        TOPIC, p, position + i, b"K", v, [("trace", f"{p}/{position + i}".encode())]
                    )
                    for i, v in enumerate(values)
                ]
                self.positions[p] = position + len(values)
        return out

    def assignment(self) -> set:
        return {TopicPartition(TOPIC, p) for p in self.owned}

    def committed(self, tp) -> int | None:
        return self.group.committed.get(tp.partition)

    def seek(self, tp, offset: int) -> None:
        self.seeks.append((tp.partition, offset))
        self.positions[tp.partition] = offset

    def seek_to_beginning(self, tp) -> None:
        self.seek(tp, 0)

    def commit(self, offsets: dict) -> None:
        if self.refuse_commits:
            self.refuse_commits -= 1
            raise CommitFailedError("the group rebalanced")
        plan = {tp.partition: meta.offset for tp, meta in offsets.items()}
        self.group.committed.update(plan)
        self.group.commits.append(plan)

    def position(self, tp) -> int:
        return self.positions.get(tp.partition, self.group.committed.get(tp.partition, 0))

    def end_offsets(self, tps) -> dict:
        return {tp: len(self.group.log[tp.partition]) for tp in tps}

    def beginning_offsets(self, tps) -> dict:
        return dict.fromkeys(tps, 0)

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(self.group.log)

    def close(self, autocommit: bool = False) -> None:
        self.closed = True

    def member_state(self) -> MemberState:
        return MemberState(self.generation, self.clock() - self.heartbeat_age)


class RecordingSink(Sink):
    """Remembers every (partition, offset) written; can fail or refuse records."""

    name = "recording"

    def __init__(self, fail_times: int = 0, refuse: Callable[[object], bool] | None = None):
        self.written: list[tuple[int, int]] = []
        self.fail_times = fail_times
        self.refuse = refuse
        self.closed = False

    def setup(self) -> None:
        pass

    def write(self, batch: Batch) -> WriteResult:
        if self.fail_times:
            self.fail_times -= 1
            raise SinkUnavailable("the sink is down")
        rejected = []
        for part in batch.parts:
            for index, (tick, offset) in enumerate(zip(part.records, part.offsets, strict=True)):
                if self.refuse and self.refuse(tick):
                    rejected.append(part.letter(index, "no", self.name))
                else:
                    self.written.append((part.partition, offset))
        return WriteResult(self.name, len(self.written), [], rejected)

    def close(self) -> None:
        self.closed = True


class RecordingDeadLetters:
    """The dead-letter writer's surface: send, flush, close."""

    def __init__(self) -> None:
        self.pending: list = []
        self.sent: list = []

    def send(self, letter) -> None:
        self.pending.append(letter)

    def flush(self) -> int:
        count = len(self.pending)
        self.sent.extend(self.pending)
        self.pending.clear()
        return count

    def close(self) -> None:
        pass


def fake_settings() -> Settings:
    return Settings.from_env({"PIPELINE_HOME": "/tmp/unused-pipeline-home"}).with_overrides(
        topic=TOPIC
    )
